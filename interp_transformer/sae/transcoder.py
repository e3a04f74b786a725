"""Transcoder: a sparse dictionary that reads one hook and writes another (e.g. ``ln2.hook_normalized`` -> ``hook_mlp_out``)."""

from __future__ import annotations

from interp_transformer.sae.config import SAEConfig
from interp_transformer.sae.dictionary import SparseAutoencoder


class Transcoder(SparseAutoencoder):
    """Encodes ``cfg.hook_name``'s activation and decodes to ``cfg.hook_name_out``'s (width ``cfg.d_out``).

    Parameters and hook points have the SAE's names; only the decoder's width differs:
    ``W_dec [d_sae d_out]``, ``b_dec [d_out]``. When spliced it replaces ``hook_name_out``.
    """

    def __init__(self, cfg: SAEConfig, init_weights: bool = True, seed: int | None = None) -> None:
        if not isinstance(cfg, SAEConfig):
            raise TypeError(f"cfg must be an SAEConfig, got {type(cfg).__name__}")
        if cfg.hook_name is None or cfg.hook_name_out is None:
            raise ValueError(
                f"a Transcoder reads one hook and writes another: set both hook_name (got {cfg.hook_name!r}) and "
                f"hook_name_out (got {cfg.hook_name_out!r}), e.g. 'blocks.0.ln2.hook_normalized' -> 'blocks.0.hook_mlp_out'"
            )
        if cfg.d_out is None:
            cfg = cfg.replace(d_out=cfg.d_in)
        super().__init__(cfg, init_weights=init_weights, seed=seed)
