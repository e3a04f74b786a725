"""The sparse dictionaries shipped inside the package, next to the embedded models they read.

Each folder under ``toy/saes`` is SAELens's format (``cfg.json`` + ``sae_weights.safetensors``) plus
``SAE_CARD.md`` (what it reconstructs, how well, and a feature whose meaning is demonstrated) and
``training.json`` (how it was made). Only files are read here: nothing imports the training code.

    from interp_transformer.sae import load_embedded, embedded_dictionaries
    sae = load_embedded("attn-only-2l-induction-resid-sae")
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp_transformer.sae.dictionary import SparseAutoencoder

SAES_DIR = Path(__file__).resolve().parents[1] / "toy" / "saes"


def embedded_dictionaries() -> dict[str, Path]:
    """Shipped dictionary name -> its folder (every folder under ``toy/saes`` holding a ``cfg.json``)."""
    if not SAES_DIR.is_dir():
        return {}
    return {path.name: path for path in sorted(SAES_DIR.iterdir()) if (path / "cfg.json").is_file()}


def load_embedded(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseAutoencoder:
    """Load a shipped dictionary by name: a ``SparseAutoencoder``, or a ``Transcoder`` when it writes another hook."""
    from interp_transformer.sae.saelens_format import load_dictionary

    if not isinstance(name, str):
        raise TypeError(f"name must be a string naming a shipped dictionary, got {type(name).__name__}")
    available = embedded_dictionaries()
    if name not in available:
        raise KeyError(f"no shipped dictionary named {name!r}; choose one of {sorted(available)} (see embedded_dictionaries())")
    return load_dictionary(available[name], device=device, dtype=dtype)
