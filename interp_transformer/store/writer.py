"""``cache_dataset``: stream a corpus through the model and write the selected activations to shards.

Memory holds one shard's activations plus one batch: each shard's buffers are allocated once,
every batch's activations are copied straight into them by the hooks, and the shard is written
as soon as it is full. Shards are fixed runs of sequences, processed in fixed batches, so the
bytes of shard ``k`` depend only on the corpus and the settings: not on interruptions, reruns
or how many processes shared the work.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp_transformer import names as hook_names
from interp_transformer import slicing
from interp_transformer.caching import NamesFilter, position_axis, resolve_cache_filter
from interp_transformer.config import DTYPES
from interp_transformer.loading.integrity import sha256_of
from interp_transformer.store import layout
from interp_transformer.store.corpus import TokenStream, token_stream
from interp_transformer.store.distributed import Workers, workers
from interp_transformer.store.layout import settings_fingerprint as settings_fingerprint

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

DEFAULT_SHARD_BYTES = 256 * 2**20


def cache_dataset(
    model: "HookedTransformer",
    corpus: Any,
    hooks: NamesFilter,
    out: str | Path,
    *,
    batch_size: int = 8,
    seq_len: int | None = None,
    dtype: torch.dtype | str | None = None,
    pos_slice: slicing.SliceInput = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    sequences_per_shard: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Cache ``hooks`` over ``corpus`` into the folder ``out``; returns the manifest's path.

    ``corpus``: a ``[n_sequences pos]`` token tensor, an iterable of strings (tokenized and cut
    into ``seq_len``-token sequences, default ``min(128, n_ctx)``) or a ``datasets`` dataset (see ``corpus.py``).
    ``hooks``: a hook name, a list of names or a predicate. ``dtype`` casts the stored
    activations; ``pos_slice`` keeps some positions only. Shards hold about ``shard_bytes`` (or
    exactly ``sequences_per_shard`` sequences). With ``resume``, finished shards in ``out`` are
    kept (after checking their tokens against the corpus) and the rest are computed; the
    settings must be the ones ``out`` was started with. Under ``torchrun`` every process runs
    this same call and takes every ``world_size``-th shard.
    """
    out = Path(out)
    _check_positive(batch_size=batch_size, shard_bytes=shard_bytes, sequences_per_shard=sequences_per_shard)
    storage_dtype = _resolve_dtype(dtype, model)
    names = resolve_cache_filter(model, hooks)
    slicing.to_index(pos_slice)
    stream = token_stream(corpus, model, seq_len)
    shapes = per_sequence_shapes(model, names, stream.seq_len, pos_slice)
    if sequences_per_shard is None:
        sequences_per_shard = _sequences_per_shard(shapes, storage_dtype, stream.seq_len, shard_bytes, batch_size)
    settings = {
        "format": layout.FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "model": {"name": model.cfg.model_name, "config": model.cfg.to_dict(), "fingerprint": model.cfg.fingerprint()},
        "device_type": model.device.type,
        "hooks": {name: {"shape": list(shape), "dtype": _dtype_name(storage_dtype)} for name, shape in shapes.items()},
        "tokens": {"seq_len": stream.seq_len, "dtype": "int64"},
        "pos_slice": slicing.to_json(pos_slice),
        "batch_size": batch_size,
        "sequences_per_shard": sequences_per_shard,
        "corpus": stream.description,
    }
    created = not out.exists()
    layout.prepare_folder(out)
    with workers(model.device) as team:
        claimed = False
        try:
            claimed = _claim_folder(out, settings, resume, team)
            n_shards = _write_owned_shards(model, stream, out, settings, team, progress)
        except BaseException:
            if team.world_size == 1:
                _release_unstarted_folder(out, claimed, created)
            raise
        if n_shards == 0:
            team.barrier()
            if team.is_main:
                _release_unstarted_folder(out, claimed, created)
            raise ValueError(f"the corpus holds no complete sequence of seq_len={stream.seq_len} tokens; nothing was cached")
        team.barrier()
        if team.is_main:
            _write_manifest(out, settings, n_shards)
        team.barrier()
    return out / layout.MANIFEST_FILE


def per_sequence_shapes(
    model: "HookedTransformer", names: list[str], seq_len: int, pos_slice: slicing.SliceInput
) -> dict[str, tuple[int, ...]]:
    """Each hook's stored shape for one sequence, from the shape table (on the meta device: no compute)."""
    table = hook_names.hook_shapes(model.cfg)
    shapes = {}
    for name in names:
        full = hook_names.concrete_shape(table[name], model.cfg, 1, seq_len)
        sliced = slicing.apply_slice(torch.empty(full, device="meta"), pos_slice, position_axis(name, model.cfg))
        shapes[name] = tuple(sliced.shape[1:])
    return shapes


def _claim_folder(out: Path, settings: dict[str, Any], resume: bool, team: Workers) -> bool:
    """Refuse a folder holding another store (or this one, without ``resume``); then record the settings.

    Returns whether this call wrote ``settings.json`` (claimed the folder).
    """
    settings_path = out / layout.SETTINGS_FILE
    if settings_path.exists():
        existing = layout.read_json(settings_path)
        if not resume:
            raise FileExistsError(f"{out} already holds an activation store; pass resume=True (--resume) to continue it, or choose another folder")
        if existing != json.loads(json.dumps(settings)):
            raise ValueError(f"{out} holds a store made with different settings, so it cannot be resumed: {_differences(existing, settings)}")
    elif any(out.glob("shard-*")):
        raise FileExistsError(f"{out} holds shard files but no {layout.SETTINGS_FILE}; choose an empty folder")
    claimed = not settings_path.exists()
    team.barrier()  # everyone has read the folder before rank 0 changes it
    if team.is_main:
        layout.remove_temporary_files(out)
        if claimed:
            layout.write_json(settings_path, settings)
    team.barrier()
    return claimed


def _release_unstarted_folder(out: Path, claimed: bool, created: bool) -> None:
    """Undo the claim of a run that wrote no shard, so the corrected command needs no ``--resume``.

    A shard on disk is work worth resuming, so then everything stays. Only what this run added goes
    (a folder this run did not claim may belong to a run still writing: its files are left alone).
    """
    if claimed and not any(out.glob("shard-*")):
        layout.remove_temporary_files(out)
        (out / layout.SETTINGS_FILE).unlink(missing_ok=True)
    if created and not any(out.iterdir()):
        out.rmdir()


def _write_owned_shards(
    model: "HookedTransformer", stream: TokenStream, out: Path, settings: dict[str, Any], team: Workers, progress: bool
) -> int:
    per_shard = settings["sequences_per_shard"]
    owned_tokens = None
    if stream.n_sequences is not None:
        n_shards = math.ceil(stream.n_sequences / per_shard)
        owned = sum(min(per_shard, stream.n_sequences - k * per_shard) for k in range(n_shards) if team.owns(k))
        owned_tokens = owned * stream.seq_len
    bar = tqdm(total=owned_tokens, unit="tok", unit_scale=True, desc="caching activations", disable=not (progress and team.is_main))
    n_shards = 0
    with bar:
        for index, first, tokens in _shards(stream.sequences, per_shard):
            n_shards = index + 1
            if not team.owns(index):
                continue
            path = layout.shard_path(out, index)
            if path.exists():
                _check_finished_shard(out, index, first, tokens)
                bar.update(tokens.numel())
                continue
            tensors = _activations(model, tokens, settings, bar)
            tensors[layout.TOKENS_KEY] = tokens
            # One metadata key: safetensors writes a multi-key map in random order, which would break byte-identity.
            metadata = {layout.FORMAT: json.dumps({"shard": index, "first_sequence": first, "settings": settings_fingerprint(settings)}, sort_keys=True)}
            layout.write_shard(out, index, tensors, metadata, first)
    return n_shards


def _activations(model: "HookedTransformer", tokens: Tensor, settings: dict[str, Any], bar: tqdm) -> dict[str, Tensor]:
    """Every hook's activations for one shard's sequences, copied batch by batch into preallocated buffers."""
    n, batch_size = tokens.shape[0], settings["batch_size"]
    pos_slice = slicing.from_json(settings["pos_slice"])
    buffers = {
        name: torch.empty((n, *spec["shape"]), dtype=DTYPES[spec["dtype"]])
        for name, spec in settings["hooks"].items()
    }
    rows = slice(0, 0)

    def copy_into_buffer(activation: Tensor, hook) -> None:
        kept = slicing.apply_slice(activation, pos_slice, position_axis(hook.name, model.cfg))
        buffers[hook.name][rows].copy_(kept)

    stop_at_layer = _last_block_needed(model, list(buffers))
    with torch.inference_mode(), model.hooks(fwd_hooks=[(list(buffers), copy_into_buffer)]):
        for start in range(0, n, batch_size):
            batch = tokens[start : start + batch_size]
            rows = slice(start, start + batch.shape[0])
            if stop_at_layer is None:
                model(batch.to(model.device), return_type=None)
            else:
                model(batch.to(model.device), stop_at_layer=stop_at_layer)
            bar.update(batch.numel())
    return buffers


def _last_block_needed(model: "HookedTransformer", names: list[str]) -> int | None:
    """The ``stop_at_layer`` that still fires every hook (None when the final LayerNorm's are among them)."""
    needed = 0
    for name in names:
        if name.startswith("blocks."):
            needed = max(needed, int(name.split(".")[1]) + 1)
        elif name not in ("hook_embed", "hook_pos_embed"):
            return None
    return needed


def _check_finished_shard(out: Path, index: int, first: int, tokens: Tensor) -> None:
    path, record = layout.shard_path(out, index), layout.record_path(out, index)
    if record.exists() and sha256_of(path) != layout.read_json(record).get("sha256"):
        raise ValueError(
            f"{path} does not match the sha256 in {record}: it changed since it was written (corrupted or "
            "overwritten); delete it (and its .json record) and rerun with resume=True (--resume) to recompute it"
        )
    stored = layout.read_shard_tokens(path)
    if not torch.equal(stored, tokens):
        raise ValueError(
            f"shard {index} in {out} holds different tokens from this corpus's sequences {first}.."
            f"{first + tokens.shape[0] - 1}: the corpus changed since the store was started; use a new folder"
        )
    if not record.exists():  # interrupted between the shard's rename and its record
        layout.write_record(out, index, first, stored)


def _write_manifest(out: Path, settings: dict[str, Any], n_shards: int) -> None:
    records = [layout.read_json(layout.record_path(out, index)) for index in range(n_shards)]
    manifest = {
        "format": layout.FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "settings": settings,
        "settings_fingerprint": settings_fingerprint(settings),
        "n_sequences": sum(r["n_sequences"] for r in records),
        "n_tokens": sum(r["n_tokens"] for r in records),
        "shards": records,
    }
    layout.write_json(out / layout.MANIFEST_FILE, manifest)


def _shards(sequences: Iterator[Tensor], per_shard: int) -> Iterator[tuple[int, int, Tensor]]:
    """(shard index, first sequence, tokens [n seq_len]) for consecutive runs of ``per_shard`` sequences."""
    pending: list[Tensor] = []
    index = first = 0
    for sequence in sequences:
        pending.append(sequence)
        if len(pending) == per_shard:
            yield index, first, torch.stack(pending)
            index, first, pending = index + 1, first + per_shard, []
    if pending:
        yield index, first, torch.stack(pending)


def _sequences_per_shard(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, seq_len: int, shard_bytes: int, batch_size: int) -> int:
    element = torch.empty((), dtype=dtype).element_size()
    per_sequence = sum(math.prod(shape) for shape in shapes.values()) * element + seq_len * 8
    count = max(1, shard_bytes // per_sequence)
    return count - count % batch_size if count >= batch_size else count


def _resolve_dtype(dtype: torch.dtype | str | None, model: "HookedTransformer") -> torch.dtype:
    if dtype is None:
        return model.cfg.dtype
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype {dtype} is not supported; use one of {sorted(DTYPES)}")
    return dtype


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _differences(existing: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> str:
    lines = []
    for key in sorted(set(existing) | set(wanted)):
        old, new = existing.get(key), json.loads(json.dumps(wanted.get(key)))
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            lines.append(_differences(old, new, f"{prefix}{key}."))
        else:
            lines.append(f"{prefix}{key}: stored {old!r}, now {new!r}")
    return "; ".join(line for line in lines if line)
