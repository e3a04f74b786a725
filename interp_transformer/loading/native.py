"""Our own on-disk format: safetensors weights, the TransformerConfig and a sha256 per weight file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import save_file
from torch import Tensor

from interp_transformer.atomic_files import atomic_write
from interp_transformer.config import TransformerConfig
from interp_transformer.loading.integrity import read_safetensors, sha256_of, verify_sha256

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

CONFIG_FILE = "interp_transformer.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def is_native(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file()


def save_native(model: "HookedTransformer", directory: str | Path) -> Path:
    """Write the model so that a crash mid-write never leaves a file that looks complete."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp))
    manifest = {
        "format": "interp_transformer",
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "sha256": {WEIGHTS_FILE: sha256_of(directory / WEIGHTS_FILE)},
    }
    atomic_write(directory / CONFIG_FILE, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2) + "\n"))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(directory)
    return directory


def load_native(directory: Path) -> tuple[TransformerConfig, dict[str, Tensor]]:
    """Config and verified weights from a directory written by ``save_native``."""
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{directory / CONFIG_FILE} has format_version {manifest.get('format_version')!r}; this version of "
            f"interp_transformer reads version {FORMAT_VERSION}"
        )
    for filename, expected in manifest["sha256"].items():
        verify_sha256(directory / filename, expected)
    return TransformerConfig.from_dict(manifest["config"]), read_safetensors(directory / WEIGHTS_FILE)
