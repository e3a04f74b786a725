"""Recipe for ``attn-only-2l-induction``: a 2-layer attention-only model trained on sequences with repeats."""

from __future__ import annotations

import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.model import HookedTransformer
from interp_transformer.synthetic import repeated_random_tokens
from interp_transformer.toy.recipes import Recipe
from interp_transformer.toy.tokenizer import build_word_tokenizer
from interp_transformer.toy.train import Batch, TrainSettings
from interp_transformer.toy.words import COMMON_WORDS

N_SPECIAL = 3  # <bos> <pad> <unk> come first in the vocabulary
BOS_ID = 0
SEQ_LEN = 61
EVAL_REPEAT_LEN = 20

CONFIG = TransformerConfig(
    d_model=64, n_layers=2, n_heads=4, d_head=16, d_vocab=N_SPECIAL + len(COMMON_WORDS), n_ctx=64,
    attn_only=True, normalization_type="LN", positional_embedding_type="shortformer", init_range=0.1, seed=0,
    model_name="attn-only-2l-induction",
)


def sample_batch(generator: torch.Generator, batch_size: int) -> Batch:
    """``<bos>`` + a random prefix of 0-12 words + ``x x`` + random words to fill, ``len(x)`` in [8, 24]."""
    tokens = torch.randint(N_SPECIAL, CONFIG.d_vocab, (batch_size, SEQ_LEN), generator=generator)
    tokens[:, 0] = BOS_ID
    lengths = torch.randint(8, 25, (batch_size,), generator=generator)
    offsets = torch.randint(0, 13, (batch_size,), generator=generator)
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


RECIPE = Recipe(
    name="attn-only-2l-induction",
    config=CONFIG,
    settings=TrainSettings(steps=4000, batch_size=64, lr=3e-3, weight_decay=0.01, warmup_steps=100, eval_every=500),
    build_tokenizer=lambda: build_word_tokenizer(COMMON_WORDS),
    sample_batch=sample_batch,
    evaluate=evaluate,
    data_description=(
        f"Sequences of {SEQ_LEN} tokens: `<bos>`, then words drawn uniformly from a {len(COMMON_WORDS)}-word "
        "vocabulary, with one segment of 4-30 words repeated immediately after itself at a random offset. "
        "Loss on every next-token prediction. Evaluation: 200 sequences `<bos> x x` with |x| = 20."
    ),
)
