"""Recipe for ``attn-only-2l-induction``: a 2-layer attention-only model trained on sequences with repeats."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.model import HookedTransformer
from interp_transformer.synthetic import repeated_random_tokens
from interp_transformer.toy.evaluation import Figure
from interp_transformer.toy.recipes import Recipe
from interp_transformer.toy.tokenizer import build_word_tokenizer
from interp_transformer.toy.train import Batch, TrainSettings
from interp_transformer.toy.words import COMMON_WORDS

N_SPECIAL = 3  # <bos> <pad> <unk> come first in the vocabulary
BOS_ID = 0
SEQ_LEN = 61
MIN_REPEAT, MAX_REPEAT = 8, 24  # training repeats are 8-24 words long ...
MAX_PREFIX = 12  # ... and start after 0-12 random words
EVAL_REPEAT_LEN = 20
# Induction "holds" for a repeat when the repeated copy's loss is below this fraction of the first copy's.
INDUCTION_HOLDS_BELOW = 0.25
RANGE_OFFSETS = (0, 6, 12, 20)  # prefix lengths probed for the range: inside the trained 0-12, and beyond

CONFIG = TransformerConfig(
    d_model=64, n_layers=2, n_heads=4, d_head=16, d_vocab=N_SPECIAL + len(COMMON_WORDS), n_ctx=64,
    attn_only=True, normalization_type="LN", positional_embedding_type="shortformer", init_range=0.1, seed=0,
    model_name="attn-only-2l-induction",
)


def sample_batch(generator: torch.Generator, batch_size: int) -> Batch:
    """``<bos>`` + a random prefix of 0-12 words + ``x x`` + random words to fill, ``len(x)`` in [8, 24]."""
    tokens = torch.randint(N_SPECIAL, CONFIG.d_vocab, (batch_size, SEQ_LEN), generator=generator)
    tokens[:, 0] = BOS_ID
    lengths = torch.randint(MIN_REPEAT, MAX_REPEAT + 1, (batch_size,), generator=generator)
    offsets = torch.randint(0, MAX_PREFIX + 1, (batch_size,), generator=generator)
    for row, (length, offset) in enumerate(zip(lengths.tolist(), offsets.tolist())):
        start = 1 + offset
        tokens[row, start + length : start + 2 * length] = tokens[row, start : start + length]
    return Batch(tokens, torch.ones(batch_size, SEQ_LEN - 1))


def evaluate(model: HookedTransformer, generator: torch.Generator) -> dict[str, float]:
    """Induction and previous-token scores of the best heads, and loss on each half of ``<bos> x x``."""
    tokens = repeated_random_tokens(200, EVAL_REPEAT_LEN, CONFIG.d_vocab, BOS_ID, generator, low=N_SPECIAL)
    patterns: dict[int, Tensor] = {}

    def keep(pattern: Tensor, hook) -> None:
        patterns[hook.layer()] = pattern

    with model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"), keep)]):
        per_token = model(tokens, return_type="loss", loss_per_token=True)
    scores = head_scores(patterns, EVAL_REPEAT_LEN)
    first, second = per_token[:, 1:EVAL_REPEAT_LEN], per_token[:, EVAL_REPEAT_LEN + 1 :]
    return {
        "induction_score": scores["induction"][1].max().item(),
        "induction_head": float(scores["induction"][1].argmax()),
        "prev_token_score": scores["prev_token"][0].max().item(),
        "prev_token_head": float(scores["prev_token"][0].argmax()),
        "loss_first_half": first.mean().item(),
        "loss_second_half": second.mean().item(),
    }


def head_scores(patterns: dict[int, Tensor], repeat_len: int) -> dict[str, Tensor]:
    """Per layer, per head: mean attention to the previous token and to the induction target."""
    prev, induction = {}, {}
    for layer, pattern in patterns.items():
        query = torch.arange(1, pattern.shape[-1])
        prev[layer] = pattern[:, :, query, query - 1].mean((0, 2))
        second_copy = torch.arange(repeat_len + 1, 2 * repeat_len + 1)
        induction[layer] = pattern[:, :, second_copy, second_copy - repeat_len + 1].mean((0, 2))
    return {"prev_token": prev, "induction": induction}



def repeat_loss_ratio(model: HookedTransformer, repeat_len: int, offset: int, generator: torch.Generator, n: int = 100) -> float:
    """Mean loss on the repeated copy over mean loss on the first copy of ``<bos> prefix x x``.

    ``prefix`` is ``offset`` random words; both means skip ``x[0]``, which no earlier token predicts.
    """
    if repeat_len < 2 or 1 + offset + 2 * repeat_len > CONFIG.n_ctx:
        raise ValueError(f"repeat_len={repeat_len} with offset={offset} needs 2 <= repeat_len and "
                         f"1 + offset + 2 * repeat_len <= n_ctx={CONFIG.n_ctx}")
    prefix = torch.randint(N_SPECIAL, CONFIG.d_vocab, (n, offset), generator=generator)
    x = torch.randint(N_SPECIAL, CONFIG.d_vocab, (n, repeat_len), generator=generator)
    tokens = torch.cat([torch.full((n, 1), BOS_ID), prefix, x, x], dim=1)
    per_token = model(tokens, return_type="loss", loss_per_token=True)  # entry i predicts token i + 1
    start = 1 + offset  # position of x[0] in the first copy
    first = per_token[:, start : start + repeat_len - 1]
    second = per_token[:, start + repeat_len : start + 2 * repeat_len - 1]
    return (second.mean() / first.mean()).item()


def induction_range(model: HookedTransformer, offset: int, generator: torch.Generator) -> dict[str, float]:
    """Shortest and longest repeat (at this prefix length) where induction holds, and the best loss ratio."""
    lengths = range(2, (CONFIG.n_ctx - 1 - offset) // 2 + 1)
    ratios = {length: repeat_loss_ratio(model, length, offset, generator) for length in lengths}
    holds = [length for length, ratio in ratios.items() if ratio < INDUCTION_HOLDS_BELOW]
    return {
        f"shortest_inducing_repeat_offset_{offset}": float(min(holds)) if holds else float("nan"),
        f"longest_inducing_repeat_offset_{offset}": float(max(holds)) if holds else float("nan"),
        f"best_repeat_loss_ratio_offset_{offset}": min(ratios.values()),
    }


def card_figures(model: HookedTransformer, seeds: Sequence[int]) -> list[Figure]:
    from interp_transformer.toy.train import masked_loss

    def measure(generator: torch.Generator) -> dict[str, float]:
        metrics = evaluate(model, generator) | {"training_data_loss": masked_loss(model, sample_batch(generator, 256)).item()}
        for offset in RANGE_OFFSETS:
            metrics |= induction_range(model, offset, generator)
        return metrics

    runs = [measure(torch.Generator().manual_seed(seed)) for seed in seeds]
    heads = {kind: " or ".join(f"H{h}" for h in sorted({int(run[f"{kind}_head"]) for run in runs}))
             for kind in ("induction", "prev_token")}
    holds = f"repeated-copy loss < {INDUCTION_HOLDS_BELOW} x first-copy loss"
    how = {
        "training_data_loss": "next-token loss on 256 fresh training sequences",
        "induction_score": f"attention to the induction target of the best layer-1 head ({heads['induction']} on every seed)",
        "prev_token_score": f"attention to the previous token of the best layer-0 head ({heads['prev_token']} on every seed)",
        "loss_first_half": f"loss on the first copy of `<bos> x x`, len(x) = {EVAL_REPEAT_LEN}, 200 sequences",
        "loss_second_half": f"loss on the repeated copy of `<bos> x x`, len(x) = {EVAL_REPEAT_LEN}, 200 sequences",
    }
    for offset in RANGE_OFFSETS:
        where = (f"`<bos> prefix x x` with a {offset}-word prefix, len(x) = 2..{(CONFIG.n_ctx - 1 - offset) // 2}, "
                 "100 sequences per length")
        how[f"shortest_inducing_repeat_offset_{offset}"] = f"shortest len(x) with {holds}; {where}"
        how[f"longest_inducing_repeat_offset_{offset}"] = f"longest len(x) with {holds}; {where}"
        how[f"best_repeat_loss_ratio_offset_{offset}"] = f"lowest repeated-copy / first-copy loss over len(x); {where}"
    return [Figure(name, tuple(run[name] for run in runs), text) for name, text in how.items()]

RECIPE = Recipe(
    name="attn-only-2l-induction",
    config=CONFIG,
    settings=TrainSettings(steps=4000, batch_size=64, lr=3e-3, weight_decay=0.01, warmup_steps=100, eval_every=500),
    build_tokenizer=lambda: build_word_tokenizer(COMMON_WORDS),
    sample_batch=sample_batch,
    evaluate=evaluate,
    card_figures=card_figures,
    card_notes=(
        "The shipped run shared the machine's 2 cores with other jobs (load average 4-8), so its time is inflated. "
        "Retraining with `python -m interp_transformer.toy.train attn-only-2l-induction` on an idle 2-core machine "
        "(2 threads) took 121 s and reproduced the training-time metrics (one evaluation draw, seed 12345) to three "
        "decimals (induction 0.945, previous-token 0.819).\n\n"
        "Where induction works: a repeat counts as induced when the repeated copy's loss is below "
        f"{INDUCTION_HOLDS_BELOW} x the first copy's (`*_inducing_repeat_offset_*` below). After a prefix inside the "
        f"trained 0-{MAX_PREFIX} words it holds for repeats of 7-8 up to 24-26 words, about the trained "
        f"{MIN_REPEAT}-{MAX_REPEAT}; repeats of 2-6 words gain little, and after a 20-word prefix (longer than "
        "training ever used) it holds for no length at all (best ratio 0.37)."
    ),
    data_description=(
        f"Sequences of {SEQ_LEN} tokens: `<bos>`, then words drawn uniformly from a {len(COMMON_WORDS)}-word "
        f"vocabulary, with one segment x of {MIN_REPEAT}-{MAX_REPEAT} words (uniform) repeated immediately after "
        f"itself, starting after a random prefix of 0-{MAX_PREFIX} words; random words fill the rest. Loss on every "
        "next-token prediction."
    ),
)
