"""Saving and loading an ActivationCache: one safetensors file plus a JSON sidecar.

``run1.safetensors`` holds the tensors; ``run1.json`` holds their names in order, shapes and
dtypes, whether the batch axis was removed, the model's config and its fingerprint, and the
tensor file's sha256. Both are written to a temporary name and renamed, tensors first, so a
crash leaves either the old pair or no sidecar (and a sidecar is what ``load`` starts from).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.atomic_files import atomic_write
from interp_transformer.loading.integrity import sha256_of

if TYPE_CHECKING:
    from interp_transformer.cache import ActivationCache
    from interp_transformer.model import HookedTransformer

FORMAT = "interp_transformer.activation_cache"
FORMAT_VERSION = 1
TENSOR_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"


def cache_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensor file, sidecar) for ``run1``, ``run1.safetensors`` or ``run1.json``."""
    path = Path(path)
    if path.suffix in (TENSOR_SUFFIX, SIDECAR_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + TENSOR_SUFFIX), path.with_name(path.name + SIDECAR_SUFFIX)


def save_cache(cache: "ActivationCache", path: str | Path) -> Path:
    tensor_path, sidecar_path = cache_paths(path)
    if tensor_path.parent.exists() and not tensor_path.parent.is_dir():
        raise NotADirectoryError(f"cannot save the cache under {tensor_path.parent}: it is a file, not a folder")
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _unshared_cpu_tensors(cache.cache_dict)
    atomic_write(tensor_path, lambda tmp: save_file(tensors, tmp))
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "names": list(cache.cache_dict),
        "shapes": {name: list(value.shape) for name, value in cache.cache_dict.items()},
        "dtypes": {name: str(value.dtype).removeprefix("torch.") for name, value in cache.cache_dict.items()},
        "has_batch_dim": cache.has_batch_dim,
        "config": cache.cfg.to_dict(),
        "config_fingerprint": cache.cfg.fingerprint(),
        "sha256": sha256_of(tensor_path),
    }
    text = json.dumps(sidecar, indent=2) + "\n"
    atomic_write(sidecar_path, lambda tmp: Path(tmp).write_text(text))
    return tensor_path


def load_cache(
    path: str | Path, model: "HookedTransformer | None" = None, device: torch.device | str | None = None
) -> "ActivationCache":
    from interp_transformer.cache import ActivationCache

    tensor_path, sidecar_path = cache_paths(path)
    if not sidecar_path.is_file():
        raise FileNotFoundError(f"no saved cache at {path}: {sidecar_path} does not exist (save writes NAME.safetensors + NAME.json)")
    sidecar = json.loads(sidecar_path.read_text())
    if sidecar.get("format") != FORMAT or sidecar.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{sidecar_path} is not an activation cache this version reads (format {sidecar.get('format')!r} "
            f"version {sidecar.get('format_version')!r}; expected {FORMAT!r} version {FORMAT_VERSION})"
        )
    cfg = TransformerConfig.from_dict(sidecar["config"])
    if model is not None:
        check_same_config(model.cfg, cfg, sidecar["config_fingerprint"], f"the cache at {tensor_path}")
    if sha256_of(tensor_path) != sidecar["sha256"]:
        raise ValueError(f"{tensor_path} does not match the sha256 in {sidecar_path}: it is truncated, corrupted or was overwritten")
    tensors = load_file(str(tensor_path), device=str(device) if device is not None else "cpu")
    ordered = {name: tensors[name] for name in sidecar["names"]}
    return ActivationCache(ordered, model, has_batch_dim=sidecar["has_batch_dim"], cfg=cfg)


def check_same_config(actual: TransformerConfig, saved: TransformerConfig, saved_fingerprint: str, what: str) -> None:
    """ValueError naming the differing fields when a model's config is not the one ``what`` was written with."""
    if actual.fingerprint() == saved_fingerprint:
        return
    mine, theirs = actual.to_dict(), saved.to_dict()
    differences = {key: (theirs.get(key), mine.get(key)) for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)}
    shown = ", ".join(f"{key}: saved {old!r}, model {new!r}" for key, (old, new) in differences.items())
    raise ValueError(
        f"{what} was written by a model with a different config (fingerprint {saved_fingerprint}, this model's is "
        f"{actual.fingerprint()}): {shown or 'fields differ in a way to_dict does not show'}"
    )


def _unshared_cpu_tensors(cache_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous CPU tensors, copied where two names share memory (safetensors refuses shared storage)."""
    seen: set[int] = set()
    out = {}
    for name, value in cache_dict.items():
        value = value.detach().to("cpu").contiguous()
        pointer = value.untyped_storage().data_ptr()
        if pointer in seen:
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        out[name] = value
    return out
