"""Which keys each query should attend to, for each kind of head a detector looks for.

Every function maps tokens ``[batch pos]`` to a boolean target ``[batch query_pos key_pos]``, causal
(no key after its query). A query with no target key (the first position for a previous-token head,
a token seen for the first time for a duplicate-token head) is left out of the head's score.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int
from torch import Tensor


def previous_token_target(tokens: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch query_pos key_pos"]:
    """Key ``q - 1`` for every query ``q >= 1``."""
    batch, pos = _check_tokens(tokens).shape
    target = torch.ones(pos, pos, dtype=torch.bool, device=tokens.device).tril(-1).triu(-1)
    return _check_any(target.expand(batch, pos, pos), "previous-token", "needs at least 2 positions")


def first_token_target(tokens: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch query_pos key_pos"]:
    """Key 0 (the BOS token, when there is one) for every query ``q >= 1``."""
    batch, pos = _check_tokens(tokens).shape
    target = torch.zeros(pos, pos, dtype=torch.bool, device=tokens.device)
    target[1:, 0] = True
    return _check_any(target.expand(batch, pos, pos), "first-token", "needs at least 2 positions")


def duplicate_token_target(tokens: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch query_pos key_pos"]:
    """Earlier keys holding the query's own token."""
    _check_tokens(tokens)
    same = tokens[:, :, None] == tokens[:, None, :]
    return _check_any(same & _strictly_earlier(tokens), "duplicate-token", "contains no repeated token")


def induction_target(tokens: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch query_pos key_pos"]:
    """Keys ``k <= q`` right after an earlier occurrence of the query's token (``tokens[k - 1] == tokens[q]``)."""
    _check_tokens(tokens)
    batch, pos = tokens.shape
    target = torch.zeros(batch, pos, pos, dtype=torch.bool, device=tokens.device)
    # Column k looks at token k - 1, which must come before the query: k - 1 < q.
    target[:, :, 1:] = (tokens[:, :, None] == tokens[:, None, :-1]) & _strictly_earlier(tokens)[:, :, :-1]
    return _check_any(target, "induction", "contains no repeated token")


def _strictly_earlier(tokens: Tensor) -> Bool[Tensor, "1 query_pos key_pos"]:
    pos = tokens.shape[1]
    return torch.ones(pos, pos, dtype=torch.bool, device=tokens.device).tril(-1)[None]


def _check_tokens(tokens: Tensor) -> Tensor:
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be an integer tensor [batch pos], got {shape}")
    return tokens


def _check_any(target: Tensor, kind: str, why: str) -> Tensor:
    if not bool(target.any()):
        raise ValueError(
            f"no query in tokens of shape {tuple(target.shape[:2])} has a {kind} target: the input {why}. "
            "Pass longer sequences with repeats (interp_transformer.synthetic.repeated_random_tokens makes some)"
        )
    return target
