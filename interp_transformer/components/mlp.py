"""The MLP: ``W_in``, an activation function, ``W_out``."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.activation_functions import ACTIVATION_FUNCTIONS, gelu_fast as gelu_fast, gelu_new as gelu_new
from interp_transformer.components.affine import affine
from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint


# The one activation table (config validation and the converters read it too); gelu_new and gelu_fast stay importable here.
ACTIVATIONS = ACTIVATION_FUNCTIONS


class MLP(nn.Module):
    """``post = act(x @ W_in + b_in)``; ``out = post @ W_out + b_out``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.act_fn = ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()  # [batch pos d_mlp]
        self.hook_post = HookPoint()  # [batch pos d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        # affine(...) is einsum("batch pos d_model, d_model d_mlp -> batch pos d_mlp") + b_in, as one addmm.
        pre = self.hook_pre(affine(x, self.W_in, self.b_in))
        post = self.hook_post(self.act_fn(pre))
        return affine(post, self.W_out, self.b_out)  # "batch pos d_mlp, d_mlp d_model -> batch pos d_model"


class GatedMLP(MLP):
    """Llama's gated MLP: ``post = act(x @ W_gate) * (x @ W_in + b_in)``; ``out = post @ W_out + b_out``.

    Hooks follow TransformerLens: ``hook_pre`` is the gate's pre-activation ``x @ W_gate``,
    ``hook_pre_linear`` the ungated branch ``x @ W_in + b_in``, ``hook_post`` their product.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__(cfg)
        self.W_gate = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.hook_pre_linear = HookPoint()  # [batch pos d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(x @ self.W_gate)  # einsum("batch pos d_model, d_model d_mlp -> batch pos d_mlp")
        pre_linear = self.hook_pre_linear(affine(x, self.W_in, self.b_in))
        post = self.hook_post(self.act_fn(pre) * pre_linear)
        return affine(post, self.W_out, self.b_out)


def __getattr__(name: str):
    if name == "make_mlp":  # moved to components.factories; imported on use to avoid a cycle
        from interp_transformer.components.factories import make_mlp

        return make_mlp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
