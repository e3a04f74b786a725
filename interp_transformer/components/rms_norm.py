"""RMSNorm (Llama-family normalisation) with hooks on its scale and normalised value, and its pre-folded variant.

``hook_normalized`` is taken before the weight ``w``, as in TransformerLens since 3.0.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.components.normalization import NormalizationPre
from interp_transformer.config import TransformerConfig


class RMSNormPre(NormalizationPre):
    """Scale to unit root-mean-square over ``d_model``, with no centring and no learned weight."""

    centres = False


class RMSNorm(RMSNormPre):
    """RMSNorm with weight ``w [d_model]`` (no bias): ``hook_normalized * w``.

    As Hugging Face's Llama does, the normalised value is cast back to the model's dtype before ``w``.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__(cfg)
        self.w = nn.Parameter(torch.ones(cfg.d_model, dtype=cfg.dtype))

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return super().forward(x) * self.w
