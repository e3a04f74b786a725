"""Reading weight files safely: safetensors (or weights-only torch pickles) with checksum verification."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor


class CorruptWeightsError(ValueError):
    """A weight file is truncated, corrupted or does not match its stored hash."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise CorruptWeightsError(
            f"weight file {path} is corrupted or truncated: its sha256 is {actual}, the stored hash is "
            f"{expected}; restore the file (reinstall the package, re-download or re-save the model)"
        )


def read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CorruptWeightsError(
            f"cannot read weight file {path} ({error}); it is probably truncated or corrupted: restore it"
        ) from error


def read_torch_checkpoint(path: Path) -> dict[str, Tensor]:
    """Weights-only unpickling: tensors and plain containers, never arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for damaged pickles
        raise CorruptWeightsError(
            f"cannot read weight file {path} with torch.load(weights_only=True) ({error}); it is truncated, "
            "corrupted, or holds objects other than tensors"
        ) from error
