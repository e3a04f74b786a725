"""Shared builders for the patching tests: tiny random models, clean/corrupted token pairs, IOI prompts on ioi-mini."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from interp_transformer import HookedTransformer, TransformerConfig
from interp_transformer.toy import embedded_models
from interp_transformer.toy.registry import WEIGHTS_DIR

BATCH, POS = 4, 9  # at least 4 prompts: BLAS picks another kernel (other rounding) for fewer rows
ANSWER, WRONG = 5, 7


def tiny_model(**overrides) -> HookedTransformer:
    values = dict(d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64, d_vocab=300, n_ctx=48, seed=0)
    values.update(overrides)
    return HookedTransformer(TransformerConfig(**values)).eval()


def token_pair(
    model: HookedTransformer, batch: int = BATCH, n_pos: int = POS, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clean prompts and a corruption of two of their positions."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, model.cfg.d_vocab, (batch, n_pos), generator=generator)
    corrupted = clean.clone()
    for pos in (1, n_pos // 2):
        corrupted[:, pos] = torch.randint(0, model.cfg.d_vocab, (batch,), generator=generator)
    return clean, corrupted


def logit_diff(logits: torch.Tensor) -> torch.Tensor:
    """A plain-function metric (TransformerLens style): the sweeps unembed every position for it."""
    return (logits[:, -1, ANSWER] - logits[:, -1, WRONG]).mean()


# ------------------------------------------------------------------------------------------- ioi-mini
IOI_TEMPLATE = "When {io} and {s} went to the {place} , {s} gave a {object} to"
IOI_NAME_POSITIONS = {"IO": 2, "S1": 4, "S2": 10}
IOI_END = 14


class IOIPair(NamedTuple):
    clean: torch.Tensor  # [batch pos]
    corrupted: torch.Tensor  # IO and S swapped everywhere: the answer flips
    io_ids: torch.Tensor
    s_ids: torch.Tensor


def load_ioi_mini() -> HookedTransformer:
    """The embedded ioi-mini (``IOI_MINI_DIR`` points the tests at a locally retrained copy instead)."""
    override = os.environ.get("IOI_MINI_DIR")
    if override:
        return HookedTransformer.from_pretrained(Path(override)).eval()
    if "ioi-mini" not in embedded_models():
        pytest.fail(
            f"the embedded model ioi-mini is not shipped yet ({WEIGHTS_DIR / 'ioi-mini'} is missing or incomplete); "
            "these tests need it: train it with `python -m interp_transformer.toy.train ioi-mini`"
        )
    return HookedTransformer.from_pretrained("ioi-mini").eval()


def ioi_pair(model: HookedTransformer, n: int = 24, seed: int = 0) -> IOIPair:
    """One template (so positions line up across prompts) with held-out-free training names; corrupted = IO and S swapped."""
    from interp_transformer.toy.words import IOI_NAMES_TRAIN, IOI_OBJECTS, IOI_PLACES

    generator = torch.Generator().manual_seed(seed)
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=generator))]  # noqa: E731
    clean_rows, corrupted_rows, io_ids, s_ids = [], [], [], []
    for _ in range(n):
        io, s = (IOI_NAMES_TRAIN[i] for i in torch.randperm(len(IOI_NAMES_TRAIN), generator=generator)[:2].tolist())
        place, obj = pick(IOI_PLACES), pick(IOI_OBJECTS)
        clean_rows.append(IOI_TEMPLATE.format(io=io, s=s, place=place, object=obj))
        corrupted_rows.append(IOI_TEMPLATE.format(io=s, s=io, place=place, object=obj))
        io_ids.append(model.to_single_token(io))
        s_ids.append(model.to_single_token(s))
    clean, corrupted = model.to_tokens(clean_rows), model.to_tokens(corrupted_rows)
    assert clean.shape == (n, IOI_END + 1), f"template tokenised to {clean.shape[1]} tokens, expected {IOI_END + 1}"
    return IOIPair(clean, corrupted, torch.tensor(io_ids), torch.tensor(s_ids))
