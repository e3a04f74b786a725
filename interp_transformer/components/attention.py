"""Causal multi-head attention with hooks on q, k, v, scores, pattern, z and per-head results."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint

REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def attention_allowed(
    query_len: int,
    key_len: int,
    attention_mask: Int[Tensor, "batch key_pos"] | None,
    device: torch.device,
) -> Bool[Tensor, "batch 1 query_pos key_pos"] | None:
    """Which keys each query may attend to, or None for plain causal attention.

    Queries are the last ``query_len`` of ``key_len`` positions (the rest come from a
    key/value cache). Padding keys are masked; every query keeps its own position, so
    a padding query never sees an empty row (its output is never read).
    """
    if attention_mask is None and query_len == key_len:
        return None
    query_pos = torch.arange(key_len - query_len, key_len, device=device)[:, None]
    key_pos = torch.arange(key_len, device=device)[None, :]
    allowed = key_pos <= query_pos
    if attention_mask is None:
        return allowed[None, None]
    allowed = allowed & attention_mask.bool()[:, None, None, :]
    return allowed | (key_pos == query_pos)


class Attention(nn.Module):
    """Multi-head attention in TransformerLens's parameter layout.

    ``W_Q, W_K, W_V [head_index d_model d_head]``, ``W_O [head_index d_head d_model]``,
    ``b_Q, b_K, b_V [head_index d_head]``, ``b_O [d_model]``. When nothing is hooked at
    ``hook_attn_scores`` or ``hook_pattern``, the pattern is never materialised and
    ``scaled_dot_product_attention`` runs instead.
    """

    def __init__(self, cfg: TransformerConfig, layer: int | None = None) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        n_heads, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_head, dtype=cfg.dtype))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, d_head, dtype=cfg.dtype))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, d_head, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(n_heads, d_head, d_model, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head, dtype=cfg.dtype))
        self.b_K = nn.Parameter(torch.zeros(n_heads, d_head, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(n_heads, d_head, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(d_model, dtype=cfg.dtype))
        self.hook_q = HookPoint()  # [batch pos head_index d_head]
        self.hook_k = HookPoint()  # [batch pos head_index d_head]
        self.hook_v = HookPoint()  # [batch pos head_index d_head]
        self.hook_attn_scores = HookPoint()  # [batch head_index query_pos key_pos]
        self.hook_pattern = HookPoint()  # [batch head_index query_pos key_pos]
        self.hook_z = HookPoint()  # [batch pos head_index d_head]
        self.hook_result = HookPoint()  # [batch pos head_index d_model], only with use_attn_result

    def forward(
        self,
        query_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        key_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        value_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        allowed: Bool[Tensor, "batch 1 query_pos key_pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        q = self.hook_q(self._project(query_input, self.W_Q, self.b_Q))
        k = self.hook_k(self._project(key_input, self.W_K, self.b_K))
        v = self.hook_v(self._project(value_input, self.W_V, self.b_V))
        if self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks():
            z = self._attend_with_pattern(q, k, v, allowed)
        else:
            z = self._attend_fused(q, k, v, allowed)
        z = self.hook_z(z)
        if not self.cfg.use_attn_result:
            return einops.einsum(
                z, self.W_O, "batch pos head_index d_head, head_index d_head d_model -> batch pos d_model"
            ) + self.b_O
        result = self.hook_result(
            einops.einsum(z, self.W_O, "batch pos head_index d_head, head_index d_head d_model -> batch pos head_index d_model")
        )
        return result.sum(-2) + self.b_O

    @staticmethod
    def _project(x: Tensor, weight: Tensor, bias: Tensor) -> Float[Tensor, "batch pos head_index d_head"]:
        if x.ndim == 4:  # split inputs: each head reads its own copy of the residual stream
            equation = "batch pos head_index d_model, head_index d_model d_head -> batch pos head_index d_head"
        else:
            equation = "batch pos d_model, head_index d_model d_head -> batch pos head_index d_head"
        return einops.einsum(x, weight, equation) + bias

    def _attend_with_pattern(
        self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None
    ) -> Float[Tensor, "batch pos head_index d_head"]:
        scores = einops.einsum(
            q, k, "batch query_pos head_index d_head, batch key_pos head_index d_head -> batch head_index query_pos key_pos"
        ) / self.cfg.attn_scale
        if allowed is None:
            query_len, key_len = scores.shape[-2:]
            allowed = torch.ones(query_len, key_len, dtype=torch.bool, device=scores.device).tril(key_len - query_len)
        scores = self.hook_attn_scores(scores.masked_fill(~allowed, float("-inf")))
        # Softmax in float32 even for half-precision models: exp overflows otherwise.
        pattern = self.hook_pattern(F.softmax(scores.float(), dim=-1).to(v.dtype))
        return einops.einsum(
            pattern, v, "batch head_index query_pos key_pos, batch key_pos head_index d_head -> batch query_pos head_index d_head"
        )

    def _attend_fused(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None) -> Float[Tensor, "batch pos head_index d_head"]:
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=allowed,
            is_causal=allowed is None,
            scale=1.0 / self.cfg.attn_scale,
        )
        return z.transpose(1, 2)
