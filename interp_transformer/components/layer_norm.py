"""LayerNorm with hooks on its scale and normalised value, and the pre-folded variant with no weights.

``hook_normalized`` is taken after centring and scaling but before the weight ``w`` and
bias ``b``, as in TransformerLens since 3.0 (its PR #770); TransformerLens 2.x took it after them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.components.normalization import REDUCED_PRECISION, NormalizationPre
from interp_transformer.config import TransformerConfig


class LayerNormPre(NormalizationPre):
    """Centre and scale to unit RMS, with no learned weights (their effect is folded downstream).

    Unless ``hook_scale`` is hooked, the fused ``F.layer_norm`` kernel computes the same thing
    (biased variance, float32 statistics) several times faster than the written-out ``normalize``.
    """

    centres = True

    def fused_normalize(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return F.layer_norm(x, x.shape[-1:], eps=self.eps)


class LayerNorm(LayerNormPre):
    """LayerNorm with weight ``w`` and bias ``b`` of shape ``[d_model]``: ``hook_normalized * w + b``.

    ``hook_normalized`` sees the value before ``w`` and ``b``; a hook that replaces it changes
    what they are applied to. With neither hook point hooked, the fused ``F.layer_norm`` kernel
    applies the weights itself, since nobody can observe the value in between.
    """

    def __init__(self, cfg: TransformerConfig, length: int | None = None) -> None:
        super().__init__(cfg)
        length = cfg.d_model if length is None else length
        self.w = nn.Parameter(torch.ones(length, dtype=cfg.dtype))
        self.b = nn.Parameter(torch.zeros(length, dtype=cfg.dtype))

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        if not (self.hook_scale.has_hooks() or self.hook_normalized.has_hooks()):
            return F.layer_norm(x, self.w.shape, self.w, self.b, self.eps)
        return affine(super().forward(x), self.w, self.b)  # super() runs hook_scale and hook_normalized


def affine(normalized: Float[Tensor, "... d_model"], w: Tensor, b: Tensor) -> Float[Tensor, "... d_model"]:
    """``normalized * w + b``, in float32 for half precision so the result is rounded once, as the fused kernel does."""
    if normalized.dtype in REDUCED_PRECISION:
        return torch.addcmul(b.float(), normalized.float(), w.float()).to(normalized.dtype)
    return torch.addcmul(b, normalized, w)


def __getattr__(name: str) -> Any:
    if name == "make_layer_norm":  # moved to components.factories; imported on use to avoid a cycle
        from interp_transformer.components.factories import make_layer_norm

        return make_layer_norm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
