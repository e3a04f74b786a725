"""Stores for the training tests: the embedded induction model's activations over random tokens (fast to cache)."""

from __future__ import annotations

from pathlib import Path

import torch

from interp_transformer import HookedTransformer
from interp_transformer.store import cache_dataset

INDUCTION_MODEL = "attn-only-2l-induction"
RESID = "blocks.1.hook_resid_pre"


def induction_model() -> HookedTransformer:
    return HookedTransformer.from_pretrained(INDUCTION_MODEL).eval()


def cache_induction_store(out: Path, hooks=RESID, n_sequences: int = 256, seq_len: int = 32, sequences_per_shard: int = 64, **kwargs) -> Path:
    """``n_sequences`` random-token sequences through the induction model, cached into ``out``."""
    model = induction_model()
    tokens = torch.randint(0, model.cfg.d_vocab, (n_sequences, seq_len), generator=torch.Generator().manual_seed(0))
    cache_dataset(model, tokens, hooks, out, progress=False, sequences_per_shard=sequences_per_shard, **kwargs)
    return out
