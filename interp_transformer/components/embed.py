"""Token and learned positional embeddings."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp_transformer.config import TransformerConfig


class Embed(nn.Module):
    """Token embedding ``W_E [d_vocab d_model]``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    """Learned positional embedding ``W_pos [n_ctx d_model]``.

    With an attention mask, positions count real tokens only, so a left-padded prompt
    sees the same positions as the prompt alone.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        past_kv_pos_offset: int = 0,
        attention_mask: Int[Tensor, "batch offset_pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        batch, pos = tokens.shape
        if attention_mask is None:
            positions = torch.arange(past_kv_pos_offset, past_kv_pos_offset + pos, device=tokens.device)
            # Index with expanded positions rather than expanding the result: hooks may edit it in place.
            return self.W_pos[positions.expand(batch, pos)]
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -pos:]
        return self.W_pos[positions]
