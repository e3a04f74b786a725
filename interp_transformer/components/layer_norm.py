"""LayerNorm with hooks on its scale and normalised value, and the pre-folded variant with no weights.

``hook_normalized`` is taken after centring and scaling but before the weight ``w`` and
bias ``b``, as in TransformerLens since 3.0 (its PR #770); TransformerLens 2.x took it after them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint

REDUCED_PRECISION = (torch.float16, torch.bfloat16)


class LayerNormPre(nn.Module):
    """Centre and scale to unit RMS, with no learned weights (their effect is folded downstream).

    Works over the last axis of ``[batch pos d_model]`` or ``[batch pos head_index d_model]``.
    In float16/bfloat16 the statistics are computed in float32 for stability.

    Unless ``hook_scale`` is hooked, the fused ``F.layer_norm`` kernel computes the same
    thing (biased variance, float32 statistics) several times faster than the written-out
    ``normalize``, which is kept for when the scale is hooked: the kernel does not expose it.
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
        x = x - x.mean(-1, keepdim=True)
        # Not torch.var_mean: on CPU its single-pass (Welford) reduction is ~3x slower than these two passes.
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return (x / scale).to(dtype)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        if self.hook_scale.has_hooks():
            return self.hook_normalized(self.normalize(x))
        return self.hook_normalized(F.layer_norm(x, x.shape[-1:], eps=self.eps))


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


def make_layer_norm(cfg: TransformerConfig) -> nn.Module | None:
    """The normalisation module the config asks for (None when the model has none)."""
    from interp_transformer.components.rms_norm import RMSNorm, RMSNormPre

    variants = {"LN": LayerNorm, "LNPre": LayerNormPre, "RMS": RMSNorm, "RMSPre": RMSNormPre}
    return variants[cfg.normalization_type](cfg) if cfg.normalization_type is not None else None
