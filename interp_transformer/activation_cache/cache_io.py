"""Saving and loading an ActivationCache: one safetensors file plus a JSON sidecar.

``run1.safetensors`` holds the tensors; ``run1.json`` holds their names in order, shapes and
dtypes, whether the batch axis was removed, the model's config and its fingerprint, and the
tensor file's sha256. Both are written to a temporary name and renamed, tensors first, so a
crash leaves either the old pair or no sidecar (and a sidecar is what ``load`` starts from).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp_transformer.atomic_files import atomic_write
from interp_transformer.config import TransformerConfig
from interp_transformer.config_compat import check_same_config
from interp_transformer.loading.integrity import sha256_of

if TYPE_CHECKING:
    from interp_transformer.activation_cache.cache import ActivationCache
    from interp_transformer.model import HookedTransformer

FORMAT = "interp_transformer.activation_cache"
FORMAT_VERSION = 1
TENSOR_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
SIDECAR_FIELDS = ("names", "has_batch_dim", "config", "config_fingerprint", "sha256")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since torch 1.6
PICKLE_PROTO = 0x80  # pickle protocol 2+ opcode; torch's legacy format starts with it too


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
    from interp_transformer.activation_cache.cache import ActivationCache

    tensor_path, sidecar_path = cache_paths(path)
    for candidate in dict.fromkeys([Path(path), tensor_path]):  # sniffed before anything else: a pickle is never opened by torch
        _refuse_pickles(candidate)
    if not sidecar_path.is_file():
        raise FileNotFoundError(f"no saved cache at {path}: {sidecar_path} does not exist (save writes NAME.safetensors + NAME.json)")
    sidecar = _read_sidecar(sidecar_path)
    cfg = TransformerConfig.from_dict(sidecar["config"])
    if model is not None:
        check_same_config(model.cfg, cfg, sidecar["config_fingerprint"], f"the cache at {tensor_path}")
    if not tensor_path.is_file():
        raise FileNotFoundError(f"{tensor_path} does not exist, but its sidecar {sidecar_path} does: restore it or save the cache again")
    if sha256_of(tensor_path) != sidecar["sha256"]:
        raise ValueError(f"{tensor_path} does not match the sha256 in {sidecar_path}: it is truncated, corrupted or was overwritten")
    try:
        tensors = load_file(str(tensor_path), device=str(device) if device is not None else "cpu")
    except SafetensorError as error:
        raise ValueError(f"cannot read {tensor_path}: it is not a valid safetensors file ({error}); save the cache again") from error
    missing = [name for name in sidecar["names"] if name not in tensors]
    if missing:
        raise ValueError(f"{sidecar_path} lists {missing}, which {tensor_path} does not hold: the two files do not belong together; save the cache again")
    ordered = {name: tensors[name] for name in sidecar["names"]}
    return ActivationCache(ordered, model, has_batch_dim=sidecar["has_batch_dim"], cfg=cfg)


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): it is truncated or corrupted; save the cache again") from error
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT or sidecar.get("format_version") != FORMAT_VERSION:
        found = (sidecar.get("format"), sidecar.get("format_version")) if isinstance(sidecar, dict) else type(sidecar).__name__
        raise ValueError(f"{path} is not an activation cache this version reads (format {found!r}; expected {FORMAT!r} version {FORMAT_VERSION})")
    missing = [key for key in SIDECAR_FIELDS if key not in sidecar]
    if missing:
        raise ValueError(f"{path} lacks the field(s) {missing}: it was edited or damaged; save the cache again")
    return sidecar


def _refuse_pickles(path: Path) -> None:
    """ValueError when ``path`` is a pickle (torch.save or plain): loading one can run arbitrary code."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        start = f.read(4)
    if start == ZIP_MAGIC:
        kind = "a zip archive (the format torch.save writes: a pickle inside)"
    elif len(start) >= 2 and start[0] == PICKLE_PROTO and 2 <= start[1] <= 5:
        kind = "a Python pickle"
    else:
        return
    raise ValueError(
        f"{path} is {kind}, not a safetensors file: ActivationCache.load reads only the NAME.safetensors + NAME.json "
        "pair that cache.save writes, and never loads pickles (unpickling can run arbitrary code). If you trust the "
        "file, read it with torch.load(path, weights_only=True), build ActivationCache(tensors, model) and save that"
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
