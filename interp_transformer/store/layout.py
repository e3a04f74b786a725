"""The on-disk layout of an activation store, and the atomic writes that keep it consistent.

```
OUT/settings.json            what was asked for (model, hooks, slices, dtype, shard size); written first
OUT/shard-00000.safetensors  one tensor per hook [n_sequences ...] plus "tokens" [n_sequences seq_len]
OUT/shard-00000.json         that shard's record: sequences, tokens, bytes, sha256
OUT/manifest.json            settings + every shard record; written last, by rank 0
```

A shard file appears only complete (temporary name, fsync, rename); it is the commit point,
so a shard without its record is complete and gets its record rebuilt. Nothing here holds a
time stamp or the number of processes, so reruns and multi-process runs write identical bytes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from interp_transformer.atomic_files import atomic_write
from interp_transformer.loading.integrity import sha256_of

FORMAT = "interp_transformer.activation_store"
FORMAT_VERSION = 1
SETTINGS_FILE = "settings.json"
MANIFEST_FILE = "manifest.json"
TOKENS_KEY = "tokens"


class StoreWriteError(OSError):
    """Writing a shard failed (full disk, unwritable folder); no partial shard was left behind."""


def shard_path(out: Path, index: int) -> Path:
    return out / f"shard-{index:05d}.safetensors"


def record_path(out: Path, index: int) -> Path:
    return out / f"shard-{index:05d}.json"


def write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}): it is truncated or corrupted (a killed run never leaves a partial "
            "file, so something else changed it); restore it, or recreate the store"
        ) from error


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """Recorded in every shard and the manifest, so a shard from another store or run is recognised."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def write_shard(out: Path, index: int, tensors: dict[str, Tensor], metadata: dict[str, str], first_sequence: int) -> dict[str, Any]:
    """Write shard ``index`` atomically, then its record; return the record."""
    path = shard_path(out, index)
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return write_record(out, index, first_sequence, tensors[TOKENS_KEY])


def write_record(out: Path, index: int, first_sequence: int, tokens: Tensor) -> dict[str, Any]:
    path = shard_path(out, index)
    record = {
        "file": path.name,
        "first_sequence": first_sequence,
        "n_sequences": int(tokens.shape[0]),
        "n_tokens": int(tokens.numel()),
        "bytes": path.stat().st_size,
        "sha256": sha256_of(path),
    }
    write_json(record_path(out, index), record)
    return record


def read_shard_tokens(path: Path) -> Tensor:
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(TOKENS_KEY)


def remove_temporary_files(out: Path) -> None:
    """Leftovers of an interrupted write: never mistaken for shards, removed before a run resumes."""
    for leftover in out.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def _atomic(path: Path, write) -> None:
    try:
        atomic_write(path, write)
    except OSError as error:
        reason = "the disk is full" if error.errno == errno.ENOSPC else f"{type(error).__name__}: {error}"
        raise StoreWriteError(error.errno, f"could not write {path} ({reason}); no partial file was left behind") from error


def prepare_folder(out: Path) -> None:
    """Create ``out`` or fail with a clear error if it cannot hold a store."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"the output path {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreWriteError(error.errno, f"cannot create the output folder {out} ({error})") from error
    if not os.access(out, os.W_OK | os.X_OK):
        raise StoreWriteError(errno.EACCES, f"the output folder {out} is not writable")
