"""The ``interp-transformer cache`` subcommand: arguments, reading the data file, running ``cache_dataset``.

Runs the same under ``torchrun --nproc_per_node N`` (each process takes every N-th shard).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

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
    cache.add_argument("--seq-len", type=int, default=None, help="tokens per sequence for text data (default 128)")
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
        device = _device(args.device)
        model = HookedTransformer.from_pretrained(args.model, device=device).eval()
        manifest_path = cache_dataset(
            model,
            read_corpus(args.data),
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
