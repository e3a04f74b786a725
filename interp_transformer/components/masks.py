"""Attention masks: which keys each query may see (causal, padding, key/value cache, sliding window).

A mask is ``allowed [batch 1 query_pos key_pos]`` (True = may attend), or None for plain causal
attention over a sequence with no cache and no padding, which both attention paths handle without
building a matrix. Queries are always the last ``query_len`` of ``key_len`` positions: the earlier
keys come from a key/value cache.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int
from torch import Tensor


def attention_allowed(
    query_len: int,
    key_len: int,
    attention_mask: Int[Tensor, "batch key_pos"] | None,
    device: torch.device,
) -> Bool[Tensor, "batch 1 query_pos key_pos"] | None:
    """Which keys each query may attend to, or None for plain causal attention.

    Padding keys are masked; every query keeps its own position, so a padding query never sees an
    empty row (its output is never read).
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

    The window slides correctly over a key/value cache. Windows count sequence slots, padding
    included, as GPT-Neo's own mask does.
    """
    query_pos = torch.arange(key_len - query_len, key_len, device=device)[:, None]
    key_pos = torch.arange(key_len, device=device)[None, :]
    in_window = (key_pos <= query_pos) & (key_pos > query_pos - window_size)
    return in_window[None, None] if allowed is None else allowed & in_window


def blocked_keys(
    allowed: Bool[Tensor, "batch 1 query_pos key_pos"] | None, query_len: int, key_len: int, device: torch.device
) -> Bool[Tensor, "batch 1 query_pos key_pos"] | Bool[Tensor, "query_pos key_pos"]:
    """The keys each query must NOT see: ``~allowed``, or for plain causal attention the keys after it."""
    if allowed is not None:
        return ~allowed
    query_pos = torch.arange(key_len - query_len, key_len, device=device)[:, None]
    return torch.arange(key_len, device=device) > query_pos
