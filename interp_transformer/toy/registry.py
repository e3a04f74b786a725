"""Finds the embedded models: every folder under ``toy/weights`` written by ``save_pretrained``."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def embedded_models() -> dict[str, Path]:
    """Embedded model name -> its directory."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    from interp_transformer.loading.native import is_native

    return {path.name: path for path in sorted(WEIGHTS_DIR.iterdir()) if path.is_dir() and is_native(path)}
