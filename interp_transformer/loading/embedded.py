"""The embedded models shipped inside the package: every folder under ``toy/weights`` written by ``save_pretrained``.

The lookup lives in the core so that ``from_pretrained("ioi-mini")`` never imports the training
code in ``toy/``; it only reads the files there.
"""

from __future__ import annotations

from pathlib import Path

from interp_transformer.loading.native import is_native

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "toy" / "weights"


def embedded_models() -> dict[str, Path]:
    """Embedded model name -> its directory."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    return {path.name: path for path in sorted(WEIGHTS_DIR.iterdir()) if path.is_dir() and is_native(path)}
