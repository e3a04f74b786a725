"""Causal multi-head attention with hooks on q, k, v, scores, pattern, z and per-head results."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from interp_transformer.components.affine import affine
from interp_transformer.components.kv_cache import KeyValueCacheEntry
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


def restrict_to_window(
    allowed: Bool[Tensor, "batch 1 query_pos key_pos"] | None, query_len: int, key_len: int, window_size: int, device: torch.device
) -> Bool[Tensor, "batch 1 query_pos key_pos"]:
    """``allowed`` (None: plain causal) narrowed to the last ``window_size`` keys of each query, itself included.

    Queries are the last ``query_len`` of ``key_len`` positions, as in ``attention_allowed``, so the
    window slides correctly over a key/value cache. Windows count sequence slots, padding included,
    as GPT-Neo's own mask does.
    """
    query_pos = torch.arange(key_len - query_len, key_len, device=device)[:, None]
    key_pos = torch.arange(key_len, device=device)[None, :]
    in_window = (key_pos <= query_pos) & (key_pos > query_pos - window_size)
    return in_window[None, None] if allowed is None else allowed & in_window


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
        # Local (sliding-window) attention is a per-layer property of the mask, so it composes with any
        # variant (rotary, grouped-query) rather than being one more subclass.
        is_local = cfg.attn_types is not None and layer is not None and cfg.attn_types[layer] == "local"
        self.window_size = cfg.window_size if is_local else None
        n_heads, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        # Grouped-query attention: fewer key/value heads, each shared by n_heads // n_kv_heads query heads.
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

    def forward(
        self,
        query_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        key_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        value_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        allowed: Bool[Tensor, "batch 1 query_pos key_pos"] | None = None,
        past_kv_cache_entry: KeyValueCacheEntry | None = None,
        positions: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """Attend from the input positions to themselves and, with ``past_kv_cache_entry``, to the cached ones.

        With a cache, ``allowed`` covers ``[query_pos = new positions, key_pos = cached + new]``.
        ``positions`` (each token's position, padding skipped) is read by rotary variants only.
        """
        if query_input is key_input is value_input and query_input.ndim == 3:
            q, k, v = self._project_qkv(query_input)
        else:
            q = self._project(query_input, self.W_Q, self.b_Q)
            k = self._project(key_input, self.W_K, self.b_K)
            v = self._project(value_input, self.W_V, self.b_V)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k = self.position_queries_and_keys(q, k, positions)
        if past_kv_cache_entry is not None:  # keys are cached after rotation, so old ones are never re-rotated
            k, v = past_kv_cache_entry.append(k, v)
        if self.n_kv_heads != self.cfg.n_heads:
            k, v = (x.repeat_interleave(self.cfg.n_heads // self.n_kv_heads, dim=2) for x in (k, v))
        if self.window_size is not None:  # both attention paths below read the narrowed mask
            allowed = restrict_to_window(allowed, q.shape[1], k.shape[1], self.window_size, q.device)
        if self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks():
            z = self._attend_with_pattern(q, k, v, allowed)
        else:
            z = self._attend_fused(q, k, v, allowed)
        z = self.hook_z(z)
        if not self.cfg.use_attn_result:
            # einsum("batch pos head_index d_head, head_index d_head d_model -> batch pos d_model") + b_O,
            # as one addmm over (head_index d_head): the einsum adds a batched matmul and a bias pass.
            return affine(z.flatten(-2), self.W_O.flatten(0, 1), self.b_O)
        result = self.hook_result(
            einops.einsum(z, self.W_O, "batch pos head_index d_head, head_index d_head d_model -> batch pos head_index d_model")
        )
        return result.sum(-2) + self.b_O

    def _project_qkv(self, x: Float[Tensor, "batch pos d_model"]) -> tuple[Tensor, Tensor, Tensor]:
        """q, k and v ``[batch pos head_index d_head]`` from one matmul, as Hugging Face computes them.

        Equal to ``_project`` three times, but three einsums each copy their permuted weight, run a
        narrower matmul and add the bias in a separate pass. Here the weights are gathered into one
        ``[d_model (qkv head_index d_head)]`` matrix (one copy, the only per-forward cost left against
        Hugging Face) and the bias add fuses into the addmm; q, k and v are views into its output.
        """
        weight = torch.cat([W.permute(1, 0, 2) for W in (self.W_Q, self.W_K, self.W_V)], dim=1)  # [d_model, 3*head_index, d_head]
        bias = torch.cat([self.b_Q, self.b_K, self.b_V])  # [3*head_index, d_head]
        qkv = affine(x, weight.flatten(1), bias.flatten()).unflatten(-1, (-1, self.cfg.d_head))
        # Slices, not unbind()/split(): autograd refuses in-place edits (patching hooks) of multi-output views.
        n_q, n_kv = self.cfg.n_heads, self.n_kv_heads
        return qkv[:, :, :n_q], qkv[:, :, n_q : n_q + n_kv], qkv[:, :, n_q + n_kv :]

    def position_queries_and_keys(
        self, q: Float[Tensor, "batch pos head_index d_head"], k: Float[Tensor, "batch pos head_index d_head"], positions: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Where positions enter q and k: nowhere here (they are in the residual stream); rotary variants rotate."""
        return q, k

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
        # Scaling q rather than the scores (exact for GPT-2's power-of-two scale) and masking in
        # place each save a pass over [batch head_index query_pos key_pos], as slow as the matmul at 1024 positions.
        scores = einops.einsum(
            q / self.cfg.attn_scale, k,
            "batch query_pos head_index d_head, batch key_pos head_index d_head -> batch head_index query_pos key_pos",
        )
        if allowed is None:  # plain causal: block the keys after each query (one op, not ones/tril/invert)
            query_len, key_len = scores.shape[-2:]
            query_pos = torch.arange(key_len - query_len, key_len, device=scores.device)[:, None]
            blocked = torch.arange(key_len, device=scores.device) > query_pos
        else:
            blocked = ~allowed
        scores = self.hook_attn_scores(scores.masked_fill_(blocked, float("-inf")))
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
