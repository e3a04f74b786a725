"""Unembedding: residual stream to logits."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.components.affine import affine
from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint


class Unembed(nn.Module):
    """``logits = x @ W_U + b_U`` with ``W_U [d_model d_vocab]``.

    ``hook_in`` is the unembedding's input (the final norm's output, after its weight and bias) and
    ``hook_out`` the logits, as TransformerLens's ``unembed.hook_in`` / ``unembed.hook_out``.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))
        self.hook_in = HookPoint()  # [batch pos d_model]
        self.hook_out = HookPoint()  # [batch pos d_vocab]

    def forward(self, residual: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        # One addmm with the bias fused: the logits are the largest tensor in the forward.
        return self.hook_out(affine(self.hook_in(residual), self.W_U, self.b_U))
