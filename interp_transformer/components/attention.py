"""Causal multi-head attention with hooks on q, k, v, scores, pattern, z and per-head results.

``forward`` is the reading path, the clean-transformer tutorial's attention written straight down:
q, k, v -> scores -> mask -> pattern -> z -> out, each step an einsum in dimension words. When
nothing observes the pattern, ``forward_fused`` (the one fast path, below the reading path) computes
the same numbers with fused kernels; ``tests/components/test_attention_fast_path.py`` proves the two
equal. Masks are built in ``masks.py``.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from interp_transformer.components.affine import affine
from interp_transformer.components.kv_cache import KeyValueCacheEntry
from interp_transformer.components.masks import (
    attention_allowed as attention_allowed,
    blocked_keys,
    restrict_to_window as restrict_to_window,
)
from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint

ResidualInput = Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"]


class Attention(nn.Module):
    """Multi-head attention in TransformerLens's parameter layout.

    ``W_Q, W_K, W_V [head_index d_model d_head]``, ``W_O [head_index d_head d_model]``,
    ``b_Q, b_K, b_V [head_index d_head]``, ``b_O [d_model]``. Under grouped-query attention
    ``W_K, W_V, b_K, b_V`` have ``n_key_value_heads`` heads, each shared by several query heads.
    """

    def __init__(self, cfg: TransformerConfig, layer: int | None = None) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        # Local (sliding-window) attention is a per-layer property of the mask, so it composes with any
        # variant (rotary, grouped-query) rather than being one more subclass.
        is_local = cfg.attn_types is not None and layer is not None and cfg.attn_types[layer] == "local"
        self.window_size = cfg.window_size if is_local else None
        n_heads, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        self.n_kv_heads = n_kv_heads = cfg.n_key_value_heads or n_heads
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_head, dtype=cfg.dtype))
        self.W_K = nn.Parameter(torch.empty(n_kv_heads, d_model, d_head, dtype=cfg.dtype))
        self.W_V = nn.Parameter(torch.empty(n_kv_heads, d_model, d_head, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(n_heads, d_head, d_model, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head, dtype=cfg.dtype))
        self.b_K = nn.Parameter(torch.zeros(n_kv_heads, d_head, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(n_kv_heads, d_head, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(d_model, dtype=cfg.dtype))
        self.hook_q = HookPoint()  # [batch pos head_index d_head]
        self.hook_k = HookPoint()  # [batch pos head_index d_head]
        self.hook_v = HookPoint()  # [batch pos head_index d_head]
        self.hook_attn_scores = HookPoint()  # [batch head_index query_pos key_pos]
        self.hook_pattern = HookPoint()  # [batch head_index query_pos key_pos]
        self.hook_z = HookPoint()  # [batch pos head_index d_head]
        if cfg.use_attn_result:  # a hook point that never fired would accept hooks silently
            self.hook_result = HookPoint()  # [batch pos head_index d_model]

    # ------------------------------------------------------------ the reading path
    def forward(
        self,
        query_input: ResidualInput,
        key_input: ResidualInput,
        value_input: ResidualInput,
        allowed: Bool[Tensor, "batch 1 query_pos key_pos"] | None = None,
        past_kv_cache_entry: KeyValueCacheEntry | None = None,
        positions: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """Attend from the input positions to themselves and, with ``past_kv_cache_entry``, to the cached ones.

        ``allowed`` (see ``masks.attention_allowed``) covers ``[query_pos = new positions, key_pos =
        cached + new]``; None is plain causal. ``positions`` (each token's position, padding
        skipped) is read by rotary variants only.
        """
        if self.fast_path_applies(query_input, key_input, value_input):
            return self.forward_fused(query_input, allowed, past_kv_cache_entry, positions)
        q = self.hook_q(self.project(query_input, self.W_Q, self.b_Q))
        k = self.hook_k(self.project(key_input, self.W_K, self.b_K))
        v = self.hook_v(self.project(value_input, self.W_V, self.b_V))
        q, k = self.position_queries_and_keys(q, k, positions)
        k, v = self.keys_and_values_so_far(k, v, past_kv_cache_entry)
        # Dividing q rather than the scores is the same number (exactly, for GPT-2's power-of-two scale)
        # and saves a pass over [batch head_index query_pos key_pos], as slow as the matmul at 1024 positions.
        scores = einops.einsum(
            q / self.cfg.attn_scale, k,
            "batch query_pos head_index d_head, batch key_pos head_index d_head -> batch head_index query_pos key_pos",
        )
        blocked = blocked_keys(self.allowed_keys(allowed, q.shape[1], k.shape[1]), q.shape[1], k.shape[1], q.device)
        scores = self.hook_attn_scores(scores.masked_fill_(blocked, float("-inf")))
        # Softmax in at least float32 (exp overflows in half precision), and in float64 for float64 models.
        pattern = self.hook_pattern(F.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(v.dtype))
        z = self.hook_z(
            einops.einsum(
                pattern, v, "batch head_index query_pos key_pos, batch key_pos head_index d_head -> batch query_pos head_index d_head"
            )
        )
        if self.cfg.use_attn_result:
            result = self.hook_result(
                einops.einsum(z, self.W_O, "batch pos head_index d_head, head_index d_head d_model -> batch pos head_index d_model")
            )
            return einops.reduce(result, "batch pos head_index d_model -> batch pos d_model", "sum") + self.b_O
        return einops.einsum(z, self.W_O, "batch pos head_index d_head, head_index d_head d_model -> batch pos d_model") + self.b_O

    @staticmethod
    def project(x: ResidualInput, weight: Tensor, bias: Tensor) -> Float[Tensor, "batch pos head_index d_head"]:
        """q, k or v: ``einsum("batch pos d_model, head_index d_model d_head -> batch pos head_index d_head") + bias``.

        With split inputs ``[batch pos head_index d_model]`` each head reads its own copy of the residual stream.
        """
        if x.ndim == 4:
            equation = "batch pos head_index d_model, head_index d_model d_head -> batch pos head_index d_head"
        else:
            equation = "batch pos d_model, head_index d_model d_head -> batch pos head_index d_head"
        return einops.einsum(x, weight, equation) + bias

    def position_queries_and_keys(
        self, q: Float[Tensor, "batch pos head_index d_head"], k: Float[Tensor, "batch pos head_index d_head"], positions: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Where positions enter q and k: nowhere here (they are in the residual stream); rotary variants rotate."""
        return q, k

    def keys_and_values_so_far(
        self, k: Float[Tensor, "batch pos head_index d_head"], v: Float[Tensor, "batch pos head_index d_head"], cache: KeyValueCacheEntry | None
    ) -> tuple[Float[Tensor, "batch key_pos head_index d_head"], Float[Tensor, "batch key_pos head_index d_head"]]:
        """Cached keys and values, then these; one per query head (grouped-query heads repeated to the query heads sharing them)."""
        if cache is not None:  # keys are cached after rotation, so old ones are never re-rotated
            k, v = cache.append(k, v)
        if self.n_kv_heads != self.cfg.n_heads:
            group = self.cfg.n_heads // self.n_kv_heads
            k, v = (x.repeat_interleave(group, dim=2) for x in (k, v))
        return k, v

    def allowed_keys(self, allowed: Tensor | None, query_len: int, key_len: int) -> Tensor | None:
        """``allowed`` narrowed to this layer's sliding window, when it has one (GPT-Neo's local layers)."""
        if self.window_size is None:
            return allowed
        return restrict_to_window(allowed, query_len, key_len, self.window_size, self.W_Q.device)

    # ------------------------------------------------------------------ FAST PATH
    # Everything below computes exactly what ``forward`` computes, with fused kernels. It runs only when
    # nothing observes what it skips: the scores and pattern (never materialised) and per-head results.
    # Proven equal to the reading path by tests/components/test_attention_fast_path.py.

    def fast_path_applies(self, query_input: Tensor, key_input: Tensor, value_input: Tensor) -> bool:
        return (
            query_input is key_input is value_input
            and query_input.ndim == 3
            and not self.cfg.use_attn_result
            and not (self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks())
        )

    def forward_fused(
        self,
        x: Float[Tensor, "batch pos d_model"],
        allowed: Bool[Tensor, "batch 1 query_pos key_pos"] | None,
        past_kv_cache_entry: KeyValueCacheEntry | None,
        positions: Int[Tensor, "batch pos"] | None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The reading path with three fusions: q, k, v from one ``addmm``; scores -> mask -> pattern -> z as
        one ``scaled_dot_product_attention``; the output projection and ``b_O`` as one ``addmm``.

        The q/k/v weights are gathered into one ``[d_model (qkv head_index d_head)]`` matrix (one copy, the
        only per-forward cost left against Hugging Face) and the bias add fuses into the matmul; q, k and
        v are views into its output. Hooks on q, k, v and z fire as on the reading path.
        """
        weight = torch.cat([W.permute(1, 0, 2) for W in (self.W_Q, self.W_K, self.W_V)], dim=1)  # [d_model, 3*head_index, d_head]
        bias = torch.cat([self.b_Q, self.b_K, self.b_V])  # [3*head_index, d_head]
        qkv = affine(x, weight.flatten(1), bias.flatten()).unflatten(-1, (-1, self.cfg.d_head))
        # Slices, not unbind()/split(): autograd refuses in-place edits (patching hooks) of multi-output views.
        n_q, n_kv = self.cfg.n_heads, self.n_kv_heads
        q, k, v = self.hook_q(qkv[:, :, :n_q]), self.hook_k(qkv[:, :, n_q : n_q + n_kv]), self.hook_v(qkv[:, :, n_q + n_kv :])
        q, k = self.position_queries_and_keys(q, k, positions)
        k, v = self.keys_and_values_so_far(k, v, past_kv_cache_entry)
        allowed = self.allowed_keys(allowed, q.shape[1], k.shape[1])
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            attn_mask=allowed, is_causal=allowed is None, scale=1.0 / self.cfg.attn_scale,
        )
        z = self.hook_z(z.transpose(1, 2))
        return affine(z.flatten(-2), self.W_O.flatten(0, 1), self.b_O)
