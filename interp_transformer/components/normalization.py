"""What LayerNorm and RMSNorm share: the weightless body (``LayerNormPre``/``RMSNormPre``) and the folding rule.

Both divide by a root-mean-square over ``d_model``; LayerNorm first removes the mean, RMSNorm does not.
``hook_scale`` ``[batch pos 1]`` is that root-mean-square and ``hook_normalized`` the normalised value,
taken before any weight ``w`` and bias ``b`` (as TransformerLens since 3.0, its PR #770).
``fold_norm_into_weight`` is the one rule that moves a norm's weight into the weights that read its
output; weight processing (``loading.processing.fold_layer_norm``) and the circuit analyses
(``circuits.layer_norm_folding``) both use it.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint

REDUCED_PRECISION = (torch.float16, torch.bfloat16)
D_MODEL_AXIS = -2  # readers are [head_index d_model d_head] (W_Q, W_K, W_V) or [d_model n] (W_in, W_gate, W_U)


class NormalizationPre(nn.Module):
    """Centre (when ``centres``) and divide by the root-mean-square over the last axis; no learned weights.

    Works over ``[batch pos d_model]`` or ``[batch pos head_index d_model]``. In float16/bfloat16 the
    statistics are computed in float32 for stability, as Hugging Face does. A subclass may offer a
    fused kernel (``fused_normalize``); it runs unless ``hook_scale`` is hooked, since no kernel
    exposes the scale.
    """

    centres: bool = True

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.eps = cfg.layer_norm_eps
        self.hook_scale = HookPoint()  # [batch pos 1]
        self.hook_normalized = HookPoint()  # [batch pos d_model]

    def normalize(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        dtype = x.dtype
        if dtype in REDUCED_PRECISION:
            x = x.float()
        if self.centres:
            x = x - x.mean(-1, keepdim=True)
        # Not torch.var_mean: on CPU its single-pass (Welford) reduction is ~3x slower than these two passes.
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return (x / scale).to(dtype)

    def fused_normalize(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"] | None:
        """``normalize(x)`` from one fused kernel, or None where there is no such kernel."""
        return None

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        fused = None if self.hook_scale.has_hooks() else self.fused_normalize(x)
        return self.hook_normalized(self.normalize(x) if fused is None else fused)


def fold_norm_into_weight(
    weight: Float[Tensor, "... d_model n"], norm_weight: Float[Tensor, "d_model"] | None, centre: bool
) -> Float[Tensor, "... d_model n"]:
    """``diag(w) W``, then centred over ``d_model`` when the norm centres (LayerNorm, not RMSNorm).

    What a weight ``W`` that reads a norm's output does to the norm's input, up to the per-position
    scale. ``norm_weight=None`` is a weightless norm (``LNPre``/``RMSPre``).
    """
    if norm_weight is not None:
        weight = weight * norm_weight[:, None]
    if centre:
        weight = weight - weight.mean(D_MODEL_AXIS, keepdim=True)
    return weight
