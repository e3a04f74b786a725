"""Rotary position embeddings (Llama, GPT-NeoX): attention whose queries and keys are rotated by position."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_transformer.components.attention import Attention
from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint


def rotate_by_position(
    x: Float[Tensor, "batch pos head_index d_head"], positions: Int[Tensor, "batch pos"], rotary_dim: int, base: float
) -> Float[Tensor, "batch pos head_index d_head"]:
    """Rotate the first ``rotary_dim`` dimensions of each head; the rest pass through.

    Dimension ``i`` pairs with ``i + rotary_dim / 2`` (the "rotate half" layout of Llama and
    GPT-NeoX, not GPT-J's adjacent pairs), rotated by angle ``position * base^(-2i / rotary_dim)``.
    Angles are computed in float32, as Hugging Face does, then cast to the activations' dtype.
    """
    inv_freq = 1.0 / base ** (torch.arange(0, rotary_dim, 2, device=x.device, dtype=torch.float32) / rotary_dim)
    angles = positions[..., None].float() * inv_freq  # [batch pos rotary_dim/2]
    angles = torch.cat([angles, angles], dim=-1)[:, :, None, :]  # [batch pos 1 rotary_dim]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    first, second = x_rot.chunk(2, dim=-1)
    rotated = x_rot * cos + torch.cat([-second, first], dim=-1) * sin
    return torch.cat([rotated, x_pass], dim=-1) if x_pass.shape[-1] else rotated


class RotaryAttention(Attention):
    """Attention with rotary embeddings: ``hook_rot_q``/``hook_rot_k`` hold q and k after rotation.

    ``hook_q``/``hook_k`` keep the unrotated projections, as in TransformerLens. Keys are cached
    after rotation.
    """

    def __init__(self, cfg: TransformerConfig, layer: int | None = None) -> None:
        super().__init__(cfg, layer)
        self.hook_rot_q = HookPoint()  # [batch pos head_index d_head]
        self.hook_rot_k = HookPoint()  # [batch pos head_index d_head] (key/value heads under GQA)

    def position_queries_and_keys(self, q: Tensor, k: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        if positions is None:
            positions = torch.arange(q.shape[1], device=q.device).expand(q.shape[0], -1)
        rotary_dim, base = self.cfg.rotary_dim, self.cfg.rotary_base
        q = self.hook_rot_q(rotate_by_position(q, positions, rotary_dim, base))
        k = self.hook_rot_k(rotate_by_position(k, positions, rotary_dim, base))
        return q, k


def __getattr__(name: str):
    if name == "make_attention":  # moved to components.factories; imported on use to avoid a cycle
        from interp_transformer.components.factories import make_attention

        return make_attention
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
