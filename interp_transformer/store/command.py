"""The ``interp-transformer cache`` subcommand: arguments, reading the data file, running ``cache_dataset``.

Runs the same under ``torchrun --nproc_per_node N`` (each process takes every N-th shard).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from interp_transformer.config import DTYPES
from interp_transformer.store.corpus import default_seq_len
from interp_transformer.store.writer import DEFAULT_SHARD_BYTES

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

DATA_FORMATS = ".txt (one document per line), .jsonl (a 'text' field per line), .pt (a [n_sequences pos] token tensor), or a folder saved by datasets' save_to_disk"
GLOB_CHARACTERS = "*?["


def add_cache_command(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser(
        "cache",
        help="cache activations over a corpus to sharded safetensors files",
        description="Stream a corpus through a model and write the selected activations to sharded safetensors files "
        "plus a manifest. Runs the same under `torchrun --nproc_per_node N` (each process takes every N-th shard).",
    )
    cache.add_argument("--model", required=True, help="model name or local directory (see `interp-transformer models`)")
    cache.add_argument("--data", type=Path, required=True, help=DATA_FORMATS)
    cache.add_argument("--hooks", required=True, help="comma-separated hook names or glob patterns, e.g. 'blocks.*.hook_resid_post'")
    cache.add_argument("--out", type=Path, required=True, help="output folder")
    cache.add_argument("--batch-size", type=int, default=8)
    cache.add_argument("--seq-len", type=int, default=None, help="tokens per sequence for text data (default: 128, or the model's n_ctx if shorter)")
    cache.add_argument("--dtype", default=None, help="stored dtype: float32, float16, bfloat16 (default: the model's)")
    cache.add_argument("--pos-slice", default=None, help="positions to keep: an index (-1) or START:STOP (default: all)")
    cache.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_BYTES / 2**20, help="approximate shard size in MiB")
    cache.add_argument("--device", default=None, help="default: cuda (this process's LOCAL_RANK under torchrun) if available, else cpu")
    cache.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (same settings required)")
    cache.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_cache_command(args: argparse.Namespace) -> int:
    from interp_transformer.model import HookedTransformer
    from interp_transformer.store.writer import cache_dataset

    try:
        check_flags(args)
        device = _device(args.device)
        model = HookedTransformer.from_pretrained(args.model, device=device).eval()
        corpus = read_corpus(args.data)
        check_seq_len(args, model, corpus)
        manifest_path = cache_dataset(
            model,
            corpus,
            hooks_from_pattern(model, args.hooks),
            args.out,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            dtype=args.dtype,
            pos_slice=parse_pos_slice(args.pos_slice),
            shard_bytes=max(1, int(args.shard_mb * 2**20)),
            resume=args.resume,
            progress=not args.no_progress,
        )
    except (ValueError, KeyError, TypeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"interp-transformer cache: error: {message}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        manifest = json.loads(manifest_path.read_text())
        print(f"wrote {manifest['n_sequences']} sequences ({manifest['n_tokens']} tokens) in {len(manifest['shards'])} shards: {manifest_path}")
    return 0


def check_flags(args: argparse.Namespace) -> None:
    """Settings errors in the user's terms (the flag to change), found before the model loads or --out is touched."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size} must be at least 1")
    if not (math.isfinite(args.shard_mb) and args.shard_mb > 0):
        raise ValueError(f"--shard-mb {args.shard_mb:g} must be a positive number of MiB (default {DEFAULT_SHARD_BYTES / 2**20:g})")
    if args.dtype is not None and args.dtype not in DTYPES:
        raise ValueError(f"--dtype {args.dtype!r} is not supported; use one of {sorted(DTYPES)}, or leave it out to keep the model's dtype")
    if args.seq_len is not None and args.seq_len < 1:
        raise ValueError(f"--seq-len {args.seq_len} must be at least 1")


def check_seq_len(args: argparse.Namespace, model: "HookedTransformer", corpus: Any) -> None:
    """--seq-len against the model's context and the data, so cache_dataset never fails on it mid-run."""
    seq_len, n_ctx = args.seq_len, model.cfg.n_ctx
    if seq_len is None:
        return
    if seq_len > n_ctx:
        raise ValueError(
            f"--seq-len {seq_len} is longer than the context of {args.model} ({n_ctx} tokens); pass --seq-len {n_ctx} "
            f"or less, or leave it out (the default is {default_seq_len(n_ctx)})"
        )
    if isinstance(corpus, torch.Tensor) and corpus.ndim == 2 and corpus.shape[1] != seq_len:
        raise ValueError(f"--seq-len {seq_len} does not match {args.data}, whose sequences have length {corpus.shape[1]}; leave --seq-len out for a token file")
    tokenizer = model.tokenizer
    prepends_bos = model.cfg.default_prepend_bos and tokenizer is not None and tokenizer.bos_token_id is not None
    if not isinstance(corpus, torch.Tensor) and prepends_bos and seq_len < 2:
        raise ValueError(f"--seq-len {seq_len} leaves no room for text after the BOS token each sequence starts with; pass --seq-len 2 or more")


def hooks_from_pattern(model: "HookedTransformer", pattern: str) -> list[str]:
    """Hook names from comma-separated exact names and glob patterns (each pattern must match something)."""
    selected: list[str] = []
    for item in (part.strip() for part in pattern.split(",")):
        if not item:
            continue
        if any(c in item for c in GLOB_CHARACTERS):
            matches = fnmatch.filter(model.hook_points(), item)
            if not matches:
                raise ValueError(f"hook pattern {item!r} matches none of the model's hook points (e.g. {model.hook_points()[:3]})")
        else:
            matches = model.resolve_hook_names(item)
        selected.extend(name for name in matches if name not in selected)
    if not selected:
        raise ValueError(f"--hooks {pattern!r} names no hooks")
    return selected


def parse_pos_slice(text: str | None) -> Any:
    if text is None:
        return None
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            return slice(*parts)
        return int(text)
    except ValueError:
        raise ValueError(f"--pos-slice must be an index (e.g. -1) or START:STOP[:STEP], got {text!r}") from None


def read_corpus(path: Path) -> Any:
    if path.is_dir():
        try:
            import datasets
        except ImportError as error:
            raise ValueError(f"{path} is a folder; reading a saved dataset needs the `datasets` package (pip install datasets)") from error
        return datasets.load_from_disk(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    if path.suffix == ".txt":
        return _TextLines(path)
    if path.suffix == ".jsonl":
        return _JsonlTexts(path)
    if path.suffix == ".pt":
        tokens = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(tokens, torch.Tensor):
            raise ValueError(f"{path} holds a {type(tokens).__name__}; a .pt corpus must be one [n_sequences pos] token tensor")
        return tokens
    raise ValueError(f"cannot read data file {path}: use {DATA_FORMATS}")


class _TextLines:
    """Non-empty lines of a text file, re-readable (each iteration opens the file again)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield line.rstrip("\n")


class _JsonlTexts(_TextLines):
    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(super().__iter__(), start=1):
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{self.path} line {number} has no string 'text' field")
            yield record["text"]


def _device(requested: str | None) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
