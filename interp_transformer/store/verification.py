"""Checks that keep ``ActivationStore`` from ever returning wrong data.

Two layers. On open, the manifest must agree with itself (shards listed in order, each
starting where the previous one ended, totals that add up, settings matching their
fingerprint): a manifest that does not could send a read past the data. On a shard's first
read in a process, its bytes must hash to the manifest's sha256 (a same-size edit changes no
size) and the index, first sequence and length recorded inside it must be the ones the
manifest gives (files swapped together with their hashes still carry their own index).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from interp_transformer.loading.integrity import sha256_of
from interp_transformer.store import layout

SHARD_FIELDS = {"file": str, "first_sequence": int, "n_sequences": int, "n_tokens": int, "bytes": int, "sha256": str}
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
RECREATE = "recreate the store (or restore the original files)"


class CorruptStoreError(ValueError):
    """A store's manifest or shard does not hold what was written: never read from it."""


def check_manifest(manifest: Any, path: Path) -> None:
    """Raise ``CorruptStoreError`` naming ``path`` unless the manifest is complete and consistent with itself."""

    def fail(what: str) -> None:
        raise CorruptStoreError(f"{path} is inconsistent: {what}; the manifest was edited or damaged: {RECREATE}")

    if not isinstance(manifest, dict):
        fail(f"it holds a {type(manifest).__name__}, not a JSON object")
    for key, kind in {"settings": dict, "settings_fingerprint": str, "n_sequences": int, "n_tokens": int, "shards": list}.items():
        _check_field(manifest, key, kind, "the manifest", fail)
    settings = manifest["settings"]
    try:
        seq_len, hooks, model = settings["tokens"]["seq_len"], settings["hooks"], settings["model"]
        model["config"], model["fingerprint"]
    except (KeyError, TypeError) as error:
        fail(f"its settings lack {error}")
    if layout.settings_fingerprint(settings) != manifest["settings_fingerprint"]:
        fail(f"its settings do not match their settings_fingerprint {manifest['settings_fingerprint']!r}")
    if not isinstance(hooks, dict) or not isinstance(seq_len, int):
        fail("its settings hold no hook table or no integer seq_len")
    if not manifest["shards"]:
        fail("it lists no shards")
    total = 0
    for index, shard in enumerate(manifest["shards"]):
        where = f"shard {index}"
        if not isinstance(shard, dict):
            fail(f"{where} is a {type(shard).__name__}, not a JSON object")
        for key, kind in SHARD_FIELDS.items():
            _check_field(shard, key, kind, where, fail)
        expected_file = layout.shard_path(Path(), index).name
        if shard["file"] != expected_file:
            fail(f"{where} is listed as {shard['file']!r} where {expected_file!r} belongs")
        where = f"shard {index} ({shard['file']})"
        if shard["n_sequences"] < 1:
            fail(f"{where} has n_sequences {shard['n_sequences']}; every shard holds at least one sequence")
        if shard["first_sequence"] != total:
            fail(f"{where} has first_sequence {shard['first_sequence']}, but the shards before it hold {total} sequences")
        if shard["n_tokens"] != shard["n_sequences"] * seq_len:
            fail(f"{where} has n_tokens {shard['n_tokens']}, not n_sequences x seq_len = {shard['n_sequences']} x {seq_len}")
        if not SHA256_PATTERN.fullmatch(shard["sha256"]):
            fail(f"{where} has sha256 {shard['sha256']!r}, not 64 lowercase hex digits")
        total += shard["n_sequences"]
    if manifest["n_sequences"] != total:
        fail(f"it records n_sequences {manifest['n_sequences']} but its shards hold {total}")
    if manifest["n_tokens"] != total * seq_len:
        fail(f"it records n_tokens {manifest['n_tokens']} but its shards hold {total} x {seq_len} = {total * seq_len}")


def open_verified_shard(store_path: Path, index: int, manifest: dict[str, Any]) -> Any:
    """A ``safe_open`` handle on shard ``index``, after checking its sha256 and the index recorded inside it."""
    record = manifest["shards"][index]
    path = store_path / record["file"]
    manifest_path = store_path / layout.MANIFEST_FILE
    actual = sha256_of(path)
    if actual != record["sha256"]:
        raise CorruptStoreError(
            f"{path} does not match the sha256 in {manifest_path} (file {actual[:16]}..., manifest "
            f"{record['sha256'][:16]}...): its bytes changed since it was written (corrupted, overwritten or "
            f"swapped with another shard); {RECREATE}"
        )
    try:
        handle = safe_open(str(path), framework="pt")
        metadata = json.loads((handle.metadata() or {})[layout.FORMAT])
        recorded = (metadata["shard"], metadata["first_sequence"], metadata["settings"])
        n_sequences = handle.get_slice(layout.TOKENS_KEY).get_shape()[0]
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, IndexError) as error:
        raise CorruptStoreError(f"{path} is not a readable store shard ({type(error).__name__}: {error}); {RECREATE}") from error
    if recorded[0] != index or recorded[1] != record["first_sequence"]:
        raise CorruptStoreError(
            f"{path} holds shard {recorded[0]} (sequences from {recorded[1]}), but {manifest_path} lists it as shard "
            f"{index} (sequences from {record['first_sequence']}): shard files were renamed or swapped; {RECREATE}"
        )
    if recorded[2] != manifest["settings_fingerprint"]:
        raise CorruptStoreError(
            f"{path} was written with settings {recorded[2]}, not this store's {manifest['settings_fingerprint']}: "
            f"it comes from another store; {RECREATE}"
        )
    if n_sequences != record["n_sequences"]:
        raise CorruptStoreError(f"{path} holds {n_sequences} sequences but {manifest_path} records {record['n_sequences']}; {RECREATE}")
    return handle


def _check_field(container: dict[str, Any], key: str, kind: type, where: str, fail) -> None:
    if key not in container:
        fail(f"{where} has no {key!r} field")
    value = container[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        fail(f"{where}'s {key} must be {'an' if kind is int else 'a'} {kind.__name__}, got {value!r}")
