"""Synthetic token sequences for probing models without a dataset."""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor


def repeated_random_tokens(
    batch: int,
    seq_len: int,
    d_vocab: int,
    bos_token_id: int | None = None,
    generator: torch.Generator | None = None,
    low: int = 0,
) -> Int[Tensor, "batch pos"]:
    """``[BOS] x x`` with ``x`` uniform random ids in ``[low, d_vocab)`` of length ``seq_len``.

    Position ``p`` of the second copy repeats position ``p - seq_len``, so an induction
    head at query ``p`` attends to key ``p - seq_len + 1``.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 to contain a repeat that induction can use, got {seq_len}")
    if not 0 <= low < d_vocab:
        raise ValueError(f"low={low} must lie in [0, d_vocab={d_vocab})")
    half = torch.randint(low, d_vocab, (batch, seq_len), generator=generator)
    tokens = torch.cat([half, half], dim=1)
    if bos_token_id is None:
        return tokens
    return torch.cat([torch.full((batch, 1), bos_token_id, dtype=tokens.dtype), tokens], dim=1)
