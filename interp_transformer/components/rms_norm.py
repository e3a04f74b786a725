"""RMSNorm (Llama-family normalisation) with hooks on its scale and normalised value, and its pre-folded variant.

``hook_normalized`` is taken before the weight ``w``, as in TransformerLens since 3.0.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint

REDUCED_PRECISION = (torch.float16, torch.bfloat16)


class RMSNormPre(nn.Module):
    """Scale to unit root-mean-square over ``d_model``, with no centring and no learned weight.

    Statistics are computed in float32 for half-precision inputs, as Hugging Face's Llama does.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.eps = cfg.layer_norm_eps
        self.hook_scale = HookPoint()  # [batch pos 1]
        self.hook_normalized = HookPoint()  # [batch pos d_model]

    def normalize(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        dtype = x.dtype
        if dtype in REDUCED_PRECISION:
            x = x.float()
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return (x / scale).to(dtype)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.hook_normalized(self.normalize(x))


class RMSNorm(RMSNormPre):
    """RMSNorm with weight ``w [d_model]`` (no bias): ``hook_normalized * w``.

    As Hugging Face's Llama does, the normalised value is cast back to the model's dtype before ``w``.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__(cfg)
        self.w = nn.Parameter(torch.ones(cfg.d_model, dtype=cfg.dtype))

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.hook_normalized(self.normalize(x)) * self.w
