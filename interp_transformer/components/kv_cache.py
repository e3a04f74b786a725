"""Key/value cache for incremental decoding: past keys and values per layer, and the padding mask of past tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class KeyValueCacheEntry:
    """One attention layer's keys and values of every position seen so far, ``[batch pos head_index d_head]``.

    ``head_index`` counts key/value heads (fewer than query heads under grouped-query attention).
    Hooks on ``hook_k``/``hook_v`` see only the new positions; what they return is what is cached.
    """

    past_keys: Float[Tensor, "batch pos head_index d_head"]
    past_values: Float[Tensor, "batch pos head_index d_head"]

    @classmethod
    def empty(cls, batch: int, n_heads: int, d_head: int, device: torch.device, dtype: torch.dtype) -> "KeyValueCacheEntry":
        zeros = torch.empty(batch, 0, n_heads, d_head, device=device, dtype=dtype)
        return cls(zeros, zeros.clone())

    def append(
        self, keys: Float[Tensor, "batch pos head_index d_head"], values: Float[Tensor, "batch pos head_index d_head"]
    ) -> tuple[Float[Tensor, "batch key_pos head_index d_head"], Float[Tensor, "batch key_pos head_index d_head"]]:
        """Store the new positions and return the keys and values of all positions, past then new."""
        if keys.shape[0] != self.past_keys.shape[0] or keys.shape[2:] != self.past_keys.shape[2:]:
            raise ValueError(
                f"new keys {tuple(keys.shape)} do not fit a cache of [batch pos head_index d_head] = "
                f"{tuple(self.past_keys.shape)}; was the cache built for another batch or model?"
            )
        self.past_keys = torch.cat([self.past_keys, keys.detach()], dim=1)
        self.past_values = torch.cat([self.past_values, values.detach()], dim=1)
        return self.past_keys, self.past_values


@dataclass
class KeyValueCache:
    """Every layer's ``KeyValueCacheEntry`` plus the attention mask of the cached positions.

    ``attention_mask`` is None while no position is padding; it holds 1 for real tokens and 0
    for padding once a padded (left-padded) batch has been fed. ``model(tokens, past_kv_cache=cache)``
    attends to the cached positions, appends the new ones and continues the positions from them.
    """

    entries: list[KeyValueCacheEntry]
    attention_mask: Int[Tensor, "batch pos"] | None = field(default=None)

    @classmethod
    def empty(cls, cfg, batch: int, device: torch.device | str) -> "KeyValueCache":
        n_kv_heads = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
        device = torch.device(device)
        return cls([KeyValueCacheEntry.empty(batch, n_kv_heads, cfg.d_head, device, cfg.dtype) for _ in range(cfg.n_layers)])

    def __len__(self) -> int:
        return self.entries[0].past_keys.shape[1] if self.entries else 0

    @property
    def batch(self) -> int:
        return self.entries[0].past_keys.shape[0]

    def extend_attention_mask(
        self, new_mask: Int[Tensor, "batch pos"] | None, batch: int, new_len: int
    ) -> Int[Tensor, "batch key_pos"] | None:
        """Record the new positions' mask; return the mask of past and new positions (None if no padding)."""
        if batch != self.batch:
            raise ValueError(f"this key/value cache holds a batch of {self.batch} sequences, the input has {batch}")
        if new_mask is None and self.attention_mask is None:
            return None
        device = (new_mask if new_mask is not None else self.attention_mask).device
        past = self.attention_mask
        if past is None:
            past = torch.ones(batch, len(self), dtype=torch.long, device=device)
        if new_mask is None:
            new_mask = torch.ones(batch, new_len, dtype=torch.long, device=device)
        self.attention_mask = torch.cat([past, new_mask.to(past.device, torch.long)], dim=1)
        return self.attention_mask
