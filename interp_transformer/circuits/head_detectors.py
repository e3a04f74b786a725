"""Head detectors: score every head by how much of its attention lands on a target pattern.

A head's score is the attention mass its queries put on their target keys (see
``detection_targets``), averaged over every query that has a target, over the batch. A head that
always attends exactly to its targets scores 1.0; uniform causal attention scores about
``targets / (position + 1)`` per query. Every detector also takes TransformerLens's
``detect_head`` options as keywords (``exclude_bos``, ``exclude_current_token``,
``error_measure``) and ``average_over="all_queries"``, TransformerLens's normalisation (divide by
every query row, not only those with a target); ``head_scoring`` explains them. Scores come as a ``[layer head_index]`` tensor per
detector; ``head_scores_frame`` turns them into a table and ``heatmap.detector_heatmap`` into a picture.

By default the detectors run on ``[BOS] x x``: ``x`` random tokens (``synthetic.repeated_random_tokens``),
which contain previous-token, first-token, duplicate-token and induction targets all at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_transformer.circuits import detection_targets
from interp_transformer.circuits.head_scoring import ScoringOptions, check_scoring_options, score_heads
from interp_transformer.circuits.heads import head_labels
from interp_transformer.synthetic import repeated_random_tokens

if TYPE_CHECKING:
    from typing_extensions import Unpack  # annotations only: typing.Unpack is 3.11+

    from interp_transformer.model import HookedTransformer

TargetFn = Callable[[Tensor], Tensor]
DETECTORS: dict[str, TargetFn] = {
    "previous_token": detection_targets.previous_token_target,
    "first_token": detection_targets.first_token_target,
    "duplicate_token": detection_targets.duplicate_token_target,
    "induction": detection_targets.induction_target,
}
DEFAULT_REPEAT_LEN = 20


def detect_heads(
    model: "HookedTransformer", tokens: Int[Tensor, "batch pos"] | None = None, **scoring: Unpack[ScoringOptions]
) -> dict[str, Float[Tensor, "layer head_index"]]:
    """All four standard detectors from one forward pass; ``tokens`` default to ``repeated_tokens_for(model)``."""
    check_scoring_options(**scoring)
    tokens = repeated_tokens_for(model) if tokens is None else tokens
    patterns = attention_patterns(model, tokens)
    return {name: score_heads(patterns, target_fn(tokens), **scoring) for name, target_fn in DETECTORS.items()}


def previous_token_scores(
    model: "HookedTransformer", tokens: Int[Tensor, "batch pos"] | None = None, **scoring: Unpack[ScoringOptions]
) -> Float[Tensor, "layer head_index"]:
    return _detect(model, tokens, detection_targets.previous_token_target, scoring)


def first_token_scores(
    model: "HookedTransformer", tokens: Int[Tensor, "batch pos"] | None = None, **scoring: Unpack[ScoringOptions]
) -> Float[Tensor, "layer head_index"]:
    return _detect(model, tokens, detection_targets.first_token_target, scoring)


def duplicate_token_scores(
    model: "HookedTransformer", tokens: Int[Tensor, "batch pos"] | None = None, **scoring: Unpack[ScoringOptions]
) -> Float[Tensor, "layer head_index"]:
    return _detect(model, tokens, detection_targets.duplicate_token_target, scoring)


def induction_scores(
    model: "HookedTransformer", tokens: Int[Tensor, "batch pos"] | None = None, **scoring: Unpack[ScoringOptions]
) -> Float[Tensor, "layer head_index"]:
    return _detect(model, tokens, detection_targets.induction_target, scoring)


def pattern_scores(
    model: "HookedTransformer",
    tokens: Int[Tensor, "batch pos"],
    target: Float[Tensor, "query_pos key_pos"] | Float[Tensor, "batch query_pos key_pos"],
    **scoring: Unpack[ScoringOptions],
) -> Float[Tensor, "layer head_index"]:
    """Scores against a user-supplied target: boolean, or weights in [0, 1], per query (and per prompt)."""
    check_scoring_options(**scoring)
    return score_heads(attention_patterns(model, tokens), target, **scoring)


def repeated_tokens_for(
    model: "HookedTransformer", batch: int = 16, repeat_len: int | None = None, seed: int = 0
) -> Int[Tensor, "batch pos"]:
    """``[BOS] x x`` with ``x`` of ``repeat_len`` random non-special tokens (BOS only if the model prepends one)."""
    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id if tokenizer is not None and model.cfg.default_prepend_bos else None
    n_bos = int(bos is not None)
    longest = (model.cfg.n_ctx - n_bos) // 2
    repeat_len = min(DEFAULT_REPEAT_LEN, longest) if repeat_len is None else repeat_len
    if repeat_len > longest:
        raise ValueError(f"repeat_len={repeat_len} does not fit twice in n_ctx={model.cfg.n_ctx} (at most {longest})")
    generator = torch.Generator().manual_seed(seed)
    tokens = repeated_random_tokens(batch, repeat_len, model.cfg.d_vocab, bos, generator, low=_first_ordinary_id(model))
    return tokens.to(model.device)


def attention_patterns(model: "HookedTransformer", tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "layer batch head_index query_pos key_pos"]:
    """Every layer's attention pattern on ``tokens``, from one forward pass that stops before the unembedding."""
    patterns: dict[int, Tensor] = {}

    def keep(pattern: Tensor, hook) -> None:
        patterns[hook.layer()] = pattern

    with torch.no_grad():
        model.run_with_hooks(
            tokens, stop_at_layer=model.cfg.n_layers, fwd_hooks=[(lambda name: name.endswith("attn.hook_pattern"), keep)]
        )
    return torch.stack([patterns[layer] for layer in range(model.cfg.n_layers)])


def head_scores_frame(scores: Mapping[str, Float[Tensor, "layer head_index"]]) -> pd.DataFrame:
    """One row per head (``layer``, ``head``, ``label`` such as "L1H3") and one column per detector."""
    if not scores:
        raise ValueError("no scores given: pass a dict such as detect_heads(model)")
    shapes = {name: tuple(value.shape) for name, value in scores.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(shape != first for shape in shapes.values()):
        raise ValueError(f"every score tensor must be [layer head_index] of one shape, got {shapes}")
    n_layers, n_heads = first
    frame = pd.DataFrame(
        {
            "layer": [layer for layer in range(n_layers) for _ in range(n_heads)],
            "head": [head for _ in range(n_layers) for head in range(n_heads)],
        }
    )
    frame["label"] = head_labels(n_layers, n_heads)
    for name, value in scores.items():
        frame[name] = value.detach().float().cpu().flatten().numpy()
    return frame


def _detect(model: "HookedTransformer", tokens: Tensor | None, target_fn: TargetFn, scoring: ScoringOptions) -> Tensor:
    check_scoring_options(**scoring)  # before the forward: bad options and a too-short input fail fast
    tokens = repeated_tokens_for(model) if tokens is None else tokens
    target = target_fn(tokens)
    return score_heads(attention_patterns(model, tokens), target, **scoring)


def _first_ordinary_id(model: "HookedTransformer") -> int:
    """The lowest token id after any special tokens at the start of the vocabulary (0 if none are there)."""
    special = set(model.tokenizer.all_special_ids) if model.tokenizer is not None else set()
    low = 0
    while low in special and low < model.cfg.d_vocab - 1:
        low += 1
    return low
