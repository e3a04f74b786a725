"""Recipe for ``attn-only-2l-induction``: a 2-layer attention-only model trained on text with repeats of every length.

Each training row is ``<bos>`` and 63 words of Zipf-distributed filler (the natural-ish part: common words
recur by chance, so a repeated single word is weak evidence) with up to four segments ``x`` of 2-31 uniform
random words, each copied later in the row right after itself or after a gap of a few words, at random places.
That covers every ``<bos> prefix x x`` that fits the context, which the evaluation probes length by length.
"""

from __future__ import annotations

import functools
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
N_CTX = 64
SEQ_LEN = N_CTX
MIN_REPEAT, MAX_REPEAT = 2, (N_CTX - 1) // 2  # every len(x) for which <bos> x x fits the context
REPEAT_TRIES = 4  # segments placed per row (a try is skipped when no free stretch is long enough)
MAX_GAP = 8  # a copy follows its original directly (half the time) or after 1-8 filler words
FILLER_ZIPF_EXPONENT = 1.0  # filler word of rank r has probability ~ 1 / r (COMMON_WORDS is in frequency order)
EVAL_REPEAT_LEN = 20
RATIO_SEQUENCES = 100  # sequences per repeat length and seed in the per-length table
# The acceptance bar: for every len(x) >= 3 the repeated copy's loss is below this fraction of the first copy's.
RATIO_BELOW = 0.5

CONFIG = TransformerConfig(
    d_model=64, n_layers=2, n_heads=4, d_head=16, d_vocab=N_SPECIAL + len(COMMON_WORDS), n_ctx=N_CTX,
    attn_only=True, normalization_type="LN", positional_embedding_type="shortformer", init_range=0.1, seed=0,
    model_name="attn-only-2l-induction",
)


@functools.cache
def filler_probabilities() -> Tensor:
    """Zipf's law over the ordinary words, most common first."""
    ranks = torch.arange(1, CONFIG.d_vocab - N_SPECIAL + 1, dtype=torch.float64)
    weights = ranks.pow(-FILLER_ZIPF_EXPONENT)
    return weights / weights.sum()


def sample_batch(generator: torch.Generator, batch_size: int) -> Batch:
    """Zipf filler with up to ``REPEAT_TRIES`` uniform-random segments of 2-31 words, each repeated later in the row."""
    tokens = torch.multinomial(filler_probabilities().expand(batch_size, -1), SEQ_LEN, replacement=True,
                               generator=generator) + N_SPECIAL
    tokens[:, 0] = BOS_ID
    segments = torch.randint(N_SPECIAL, CONFIG.d_vocab, (batch_size, SEQ_LEN), generator=generator)
    lengths = torch.randint(MIN_REPEAT, MAX_REPEAT + 1, (batch_size, REPEAT_TRIES), generator=generator)
    gaps = torch.randint(1, MAX_GAP + 1, (batch_size, REPEAT_TRIES), generator=generator)
    adjacent = torch.rand(batch_size, REPEAT_TRIES, generator=generator) < 0.5
    gaps = gaps.masked_fill(adjacent, 0)
    picks = torch.rand(batch_size, REPEAT_TRIES, generator=generator)
    for row in range(batch_size):
        free = [(1, SEQ_LEN)]  # half-open stretches of filler not yet used by a segment or its copy
        for length, gap, pick in zip(lengths[row].tolist(), gaps[row].tolist(), picks[row].tolist()):
            placed = _place(free, 2 * length + gap, pick)
            if placed is None:
                continue
            start, stretch = placed
            x = segments[row, start : start + length]
            tokens[row, start : start + length] = x
            tokens[row, start + length + gap : start + 2 * length + gap] = x
            free.remove(stretch)
            free += [part for part in ((stretch[0], start), (start + 2 * length + gap, stretch[1])) if part[1] > part[0]]
    return Batch(tokens, torch.ones(batch_size, SEQ_LEN - 1))


def _place(free: list[tuple[int, int]], span: int, pick: float) -> tuple[int, tuple[int, int]] | None:
    """A start for ``span`` positions, uniform over every start that fits a free stretch (``pick`` in [0, 1))."""
    fitting = [(stretch, stretch[1] - stretch[0] - span + 1) for stretch in free if stretch[1] - stretch[0] >= span]
    index = int(pick * sum(count for _, count in fitting))
    for stretch, count in fitting:
        if index < count:
            return stretch[0] + index, stretch
        index -= count
    return None


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
    ratios = [repeat_at_random_offsets(model, length, generator, 32)[0] for length in (3, 8, MAX_REPEAT)]
    per_head = {f"L1H{head}_induction_score": score for head, score in enumerate(scores["induction"][1].tolist())}
    per_head |= {f"L0H{head}_prev_token_score": score for head, score in enumerate(scores["prev_token"][0].tolist())}
    return per_head | {
        "induction_score": scores["induction"][1].max().item(),
        "induction_head": float(scores["induction"][1].argmax()),
        "prev_token_score": scores["prev_token"][0].max().item(),
        "prev_token_head": float(scores["prev_token"][0].argmax()),
        "loss_first_half": first.mean().item(),
        "loss_second_half": second.mean().item(),
        "repeat_loss_ratio_len_3": ratios[0],
        "repeat_loss_ratio_len_8": ratios[1],
        f"repeat_loss_ratio_len_{MAX_REPEAT}": ratios[2],
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


def repeat_at_random_offsets(
    model: HookedTransformer, repeat_len: int, generator: torch.Generator, n: int = RATIO_SEQUENCES
) -> tuple[float, Tensor]:
    """Loss ratio and layer-1 induction attention on ``<bos> prefix x x``, the prefix 0..max random words per row.

    Each row gets its own prefix length, uniform over every one that fits ``n_ctx``; random words fill the
    row after the second copy (causal attention never sees them). Returns the mean loss on the repeated
    copy over the mean loss on the first copy (both skip ``x[0]``, which nothing earlier predicts) and,
    per layer-1 head, the mean attention from each second-copy token to the token after its earlier copy.
    """
    max_offset = CONFIG.n_ctx - 1 - 2 * repeat_len
    if repeat_len < 2 or max_offset < 0:
        raise ValueError(f"repeat_len={repeat_len}: <bos> x x needs 2 <= len(x) <= {MAX_REPEAT} to fit n_ctx={CONFIG.n_ctx}")
    tokens = torch.randint(N_SPECIAL, CONFIG.d_vocab, (n, CONFIG.n_ctx), generator=generator)
    tokens[:, 0] = BOS_ID
    x = torch.randint(N_SPECIAL, CONFIG.d_vocab, (n, repeat_len), generator=generator)
    starts = 1 + torch.randint(0, max_offset + 1, (n, 1), generator=generator)  # position of x[0]
    rows, within = torch.arange(n)[:, None], torch.arange(repeat_len)
    tokens[rows, starts + within] = x
    tokens[rows, starts + repeat_len + within] = x
    patterns: dict[str, Tensor] = {}

    def keep(pattern: Tensor, hook) -> None:
        patterns["layer_1"] = pattern

    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", keep)]):
        per_token = model(tokens, return_type="loss", loss_per_token=True)  # entry i predicts token i + 1
    first = per_token[rows, starts + within[1:] - 1]
    second = per_token[rows, starts + repeat_len + within[1:] - 1]
    queries = starts + repeat_len + within  # [n repeat_len]
    attention = patterns["layer_1"][rows, :, queries, queries - repeat_len + 1]  # [n repeat_len head]
    return (second.mean() / first.mean()).item(), attention.mean((0, 1))


def card_figures(model: HookedTransformer, seeds: Sequence[int]) -> list[Figure]:
    from interp_transformer.toy.train import masked_loss

    lengths = range(MIN_REPEAT, MAX_REPEAT + 1)

    def measure(generator: torch.Generator) -> dict[str, float]:
        metrics = evaluate(model, generator) | {"training_data_loss": masked_loss(model, sample_batch(generator, 256)).item()}
        head = int(metrics["induction_head"])
        for length in lengths:
            ratio, attention = repeat_at_random_offsets(model, length, generator)
            metrics[f"repeat_loss_ratio_len_{length}"] = ratio
            metrics[f"induction_score_len_{length}"] = attention[head].item()
        metrics["worst_repeat_loss_ratio_len_3_up"] = max(metrics[f"repeat_loss_ratio_len_{n}"] for n in lengths if n >= 3)
        return metrics

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same sums whoever calls (and these small forwards are faster on one thread)
    try:
        runs = [measure(torch.Generator().manual_seed(seed)) for seed in seeds]
    finally:
        torch.set_num_threads(threads)
    heads = {kind: " or ".join(f"H{h}" for h in sorted({int(run[f"{kind}_head"]) for run in runs}))
             for kind in ("induction", "prev_token")}
    offsets = "after a random prefix of 0 to 63-2·len(x) words (uniform, per sequence)"
    how = {
        "training_data_loss": "next-token loss on 256 fresh training sequences",
        "induction_score": f"attention to the induction target of the best layer-1 head (L1{heads['induction']} on every "
                           f"seed), `<bos> x x`, len(x) = {EVAL_REPEAT_LEN}, 200 sequences",
        "prev_token_score": f"attention to the previous token of the best layer-0 head (L0{heads['prev_token']} on every "
                            "seed), same sequences",
        "loss_first_half": f"loss on the first copy of `<bos> x x`, len(x) = {EVAL_REPEAT_LEN}, 200 sequences",
        "loss_second_half": f"loss on the repeated copy of `<bos> x x`, len(x) = {EVAL_REPEAT_LEN}, 200 sequences",
        "worst_repeat_loss_ratio_len_3_up": f"largest repeat_loss_ratio_len_L over L = 3..{MAX_REPEAT} (below)",
    }
    for head in range(CONFIG.n_heads):
        how[f"L0H{head}_prev_token_score"] = (f"attention of L0H{head} to the previous token, `<bos> x x`, "
                                              f"len(x) = {EVAL_REPEAT_LEN}, 200 sequences")
    for head in range(CONFIG.n_heads):
        how[f"L1H{head}_induction_score"] = (f"attention of L1H{head} to the induction target, `<bos> x x`, "
                                             f"len(x) = {EVAL_REPEAT_LEN}, 200 sequences")
    for length in (MIN_REPEAT, MAX_REPEAT):
        how[f"induction_score_len_{length}"] = (
            f"attention of L1{heads['induction']} from each second-copy token to the token after its earlier copy; "
            f"`<bos> prefix x x`, len(x) = {length}, {offsets}, {RATIO_SEQUENCES} sequences")
    for length in lengths:
        how[f"repeat_loss_ratio_len_{length}"] = (
            f"repeated-copy / first-copy loss (x[1:] in each) of `<bos> prefix x x`, len(x) = {length}, {offsets}, "
            f"{RATIO_SEQUENCES} sequences")
    return [Figure(name, tuple(run[name] for run in runs), text) for name, text in how.items()]


def card_notes(training: dict) -> str:
    return (
        f"Time: the {training['train_seconds']:.0f} s above are wall-clock time on a 2-core machine shared with other "
        "jobs (load average 4-16 during the run). The same run used 237 s of CPU time (user + system, one thread, "
        "start-up and evaluations included), which is about what it needs on an idle core: under 5 minutes.\n\n"
        "What reproduces: the data and the initial weights are seeded (torch's CPU generator), and training runs "
        "on one thread with deterministic algorithms; two runs of the first 60 steps on this machine gave "
        "bit-identical weights. A full retrain on another CPU was not checked: matrix kernels differ between CPUs, "
        "so its last bits, and with them the figures' last digits, may differ. The claims the tests hold a retrain "
        f"to have margin: a repeated-copy / first-copy loss ratio below {RATIO_BELOW} for every len(x) from 3 up "
        "(here at most about 0.32, for len(x) = 3) and an induction score above 0.5 on the shortest and longest "
        "repeat (here about 0.8 and 0.95). A far larger change than last bits, a retrain from seed 1 (other initial "
        "weights, other data; 272 s of CPU time), met the same bar with the same margin (5 evaluation seeds: worst "
        "ratio 0.316 ± 0.021 at len(x) = 3, induction score 0.796 ± 0.011 at len(x) = 2 and 0.944 ± 0.004 at "
        "len(x) = 31; again four induction heads and one clearest previous-token head, 0.58).\n\n"
        f"Where induction works: every len(x) from {MIN_REPEAT} to {MAX_REPEAT} (all that `<bos> x x` fits in "
        f"n_ctx={CONFIG.n_ctx}), after any prefix that fits, one length at a time in `repeat_loss_ratio_len_*` below; "
        "the ratio falls as repeats get longer.\n\n"
        "Head roles in the shipped weights (per-head rows below): all four layer-1 heads are induction heads "
        "(0.85-0.95 of their attention on the induction target). Layer 0 has one clear previous-token head, L0H2 "
        "(0.65 on the previous token); L0H1 and L0H3 attend to the previous token in part (0.41, 0.35) and spread "
        "the rest over the few tokens before it, and L0H0 is diffuse. Each layer-0 head's output is read by the "
        "induction heads' keys about equally (K-composition 0.16-0.23 against a random baseline of 0.13; "
        "`analyses/induction_heads.py`). The filler's common words recur by chance, so matching on a blurred "
        "window of the last few tokens, not on one previous token alone, is a plausible reason for this split."
    )


RECIPE = Recipe(
    name="attn-only-2l-induction",
    config=CONFIG,
    settings=TrainSettings(steps=3000, batch_size=64, lr=3e-3, weight_decay=0.01, warmup_steps=100, eval_every=500,
                           threads=1, deterministic=True),
    build_tokenizer=lambda: build_word_tokenizer(COMMON_WORDS),
    sample_batch=sample_batch,
    evaluate=evaluate,
    card_figures=card_figures,
    card_notes=card_notes,
    data_description=(
        f"Rows of {SEQ_LEN} tokens: `<bos>`, then filler words drawn by Zipf's law (probability ~ 1/rank over the "
        f"{len(COMMON_WORDS)}-word vocabulary, common words first), into which up to {REPEAT_TRIES} segments x of "
        f"{MIN_REPEAT}-{MAX_REPEAT} uniformly random words are written, each followed by its copy either directly "
        f"(half the time) or after 1-{MAX_GAP} filler words, at a uniformly random free place in the row (a segment "
        "that no longer fits is skipped). Loss on every next-token prediction."
    ),
)
