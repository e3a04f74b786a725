"""How well each head's attention matches a target pattern: our default score and TransformerLens's options.

Two error measures, as in TransformerLens's ``detect_head``:

- ``"mul"`` (default): the fraction of attention that lands on the target,
  ``sum(pattern * target) / sum(pattern)`` over the chosen queries.
- ``"abs"``: one minus the mean over the chosen queries of the L1 distance between a query's
  attention row and its target row, in [-1, 1].

``exclude_bos`` drops key position 0 and ``exclude_current_token`` the diagonal from both sums
(from the pattern for ``"mul"``, from the distance for ``"abs"``), exactly as TransformerLens does.

Which queries count (``average_over``) is where the default differs from TransformerLens:

- ``"target_queries"`` (default): only queries that have a target, pooled over the batch. A head
  that always attends to its targets scores 1.0, whatever the sequence (the first position has no
  previous token, a token seen for the first time has no duplicate: they are left out).
- ``"all_queries"``: every query row of every prompt, one score per prompt, averaged over prompts:
  TransformerLens's normalisation. A perfect previous-token head then scores ``(pos - 1) / pos``,
  a perfect induction head on ``[BOS] x x`` about one half. Pass this (with the same
  ``exclude_bos``, ``exclude_current_token`` and ``error_measure``) to get TransformerLens's numbers.

TransformerLens rounds the ``"abs"`` score to 3 decimals; we do not. A head whose whole attention
falls on excluded keys has nothing to score: ``"mul"`` gives nan there, as TransformerLens does.
"""

from __future__ import annotations

from typing import Literal, TypedDict, get_args

import einops
import torch
from jaxtyping import Float
from torch import Tensor

ErrorMeasure = Literal["mul", "abs"]
AverageOver = Literal["target_queries", "all_queries"]


class ScoringOptions(TypedDict, total=False):
    """The keyword options every detector passes on to ``score_heads``."""

    exclude_bos: bool
    exclude_current_token: bool
    error_measure: ErrorMeasure
    average_over: AverageOver


def score_heads(
    patterns: Float[Tensor, "layer batch head_index query_pos key_pos"],
    target: Float[Tensor, "query_pos key_pos"] | Float[Tensor, "batch query_pos key_pos"],
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    error_measure: ErrorMeasure = "mul",
    average_over: AverageOver = "target_queries",
) -> Float[Tensor, "layer head_index"]:
    """Score every head's pattern against ``target`` (see the module docstring for the options)."""
    check_scoring_options(exclude_bos, exclude_current_token, error_measure, average_over)
    weights = _target_weights(patterns, target)
    has_target = weights.bool().any(-1)  # [batch query_pos]
    if not bool(has_target.any()):
        raise ValueError("the target is empty: no query has any key to attend to")
    kept_keys = torch.ones(patterns.shape[-2:], dtype=patterns.dtype, device=patterns.device)
    if exclude_bos:
        kept_keys[:, 0] = 0
    if exclude_current_token:
        kept_keys.fill_diagonal_(0)
    counted = (has_target if average_over == "target_queries" else torch.ones_like(has_target)).to(patterns.dtype)
    if error_measure == "mul":
        kept = patterns * kept_keys
        on_target = einops.einsum(kept, weights, "layer batch head_index query_pos key_pos, batch query_pos key_pos -> layer head_index batch query_pos")
        total = einops.rearrange(kept.sum(-1), "layer batch head_index query_pos -> layer head_index batch query_pos")
        on_target, total = on_target * counted, total * counted
        if average_over == "all_queries":  # TransformerLens scores each prompt, then averages the prompts
            return (on_target.sum(-1) / total.sum(-1)).mean(-1)
        return on_target.sum((-2, -1)) / total.sum((-2, -1))
    distance = ((patterns - weights[None, :, None]).abs() * kept_keys).sum(-1)  # [layer batch head_index query_pos]
    distance = einops.rearrange(distance, "layer batch head_index query_pos -> layer head_index batch query_pos")
    return 1 - (distance * counted).sum((-2, -1)) / counted.sum()


def check_scoring_options(
    exclude_bos: object = False, exclude_current_token: object = False, error_measure: object = "mul", average_over: object = "target_queries"
) -> None:
    """A TypeError or ValueError naming the bad option and its valid values."""
    for name, value in (("exclude_bos", exclude_bos), ("exclude_current_token", exclude_current_token)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    if error_measure not in get_args(ErrorMeasure):
        raise ValueError(f"error_measure must be one of {list(get_args(ErrorMeasure))}, got {error_measure!r}")
    if average_over not in get_args(AverageOver):
        raise ValueError(
            f"average_over must be one of {list(get_args(AverageOver))} "
            f"('all_queries' is TransformerLens's normalisation), got {average_over!r}"
        )


def _target_weights(patterns: Tensor, target: Tensor) -> Float[Tensor, "batch query_pos key_pos"]:
    batch, query_len, key_len = patterns.shape[1], patterns.shape[3], patterns.shape[4]
    given = tuple(target.shape)
    if target.ndim == 2:
        target = target.expand(batch, *target.shape)
    if tuple(target.shape) != (batch, query_len, key_len):
        raise ValueError(
            f"target of shape {given} does not fit patterns of shape {tuple(patterns.shape)}: "
            f"it must be [query_pos key_pos] = {(query_len, key_len)} or [batch query_pos key_pos] = {(batch, query_len, key_len)}"
        )
    weights = target.to(patterns.dtype)
    if not bool(((weights >= 0) & (weights <= 1)).all()):
        raise ValueError("target weights must lie in [0, 1] (True/1 = the query should attend to that key)")
    return weights
