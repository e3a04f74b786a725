"""Patching metrics: functions of the logits ``[batch pos d_vocab]`` to a scalar or one value per prompt.

Any callable ``metric(logits) -> Tensor`` works in every sweep. The classes here add two things:

- ``reduction``: ``"mean"`` (a scalar, TransformerLens's convention), ``"sum"``, or ``"none"``
  (one value per prompt, ``[batch]``; sweeps then return a trailing ``batch`` axis);
- ``AnswerMetric``s read the logits at one position per prompt (``positions``: an int, or a
  ``[batch]`` tensor for right-padded prompts). Sweeps use that to unembed only those positions,
  which for short prompts and large vocabularies is most of a forward's work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Literal, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_transformer.model import lm_cross_entropy_loss

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")
TokenIds = Union[int, Int[Tensor, "batch"]]
Positions = Union[int, Int[Tensor, "batch"]]
Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], Tensor]


def reduce(values: Float[Tensor, "batch"], reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _check_reduction(reduction: str) -> Reduction:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _per_prompt(ids: TokenIds | Tensor, batch: int, device: torch.device, what: str) -> Int[Tensor, "batch"]:
    ids = torch.as_tensor(ids, device=device)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"{what} must be integer ids, got dtype {ids.dtype}")
    if ids.ndim == 0:
        return ids.expand(batch)
    if ids.shape != (batch,):
        raise ValueError(f"{what} must be one int or a [batch={batch}] tensor, got shape {tuple(ids.shape)}")
    return ids


def _token_id_range(ids: TokenIds, what: str, d_vocab: int | None = None) -> tuple[int, int]:
    """Smallest and largest id in ``ids`` (checked once, when the metric is built): integers, >= 0, < d_vocab if known."""
    try:
        ids = torch.as_tensor(ids)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what} must be an int token id or a [batch] tensor of them, got {type(ids).__name__} {ids!r}") from None
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{what} must be integer ids, got dtype {ids.dtype}")
    if ids.ndim > 1 or ids.numel() == 0:
        raise ValueError(f"{what} must be one int or a [batch] tensor of ids, got shape {tuple(ids.shape)}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0:  # a negative id would silently index from the end of the vocabulary
        raise ValueError(f"{what} holds token id {low}; ids must be in [0, d_vocab)")
    _check_in_vocab(what, high, d_vocab)
    return low, high


def _check_in_vocab(what: str, high: int, d_vocab: int | None) -> None:
    if d_vocab is not None and high >= d_vocab:
        raise ValueError(f"{what} holds token id {high}, outside the vocabulary: ids must be in [0, d_vocab={d_vocab})")


def _check_positions(positions: Positions, n_positions: int) -> None:
    if isinstance(positions, bool) or not isinstance(positions, (int, Tensor)):
        raise TypeError(f"positions must be an int or a [batch] tensor of ints, got {type(positions).__name__} {positions!r}")
    if isinstance(positions, Tensor) and (positions.is_floating_point() or positions.dtype == torch.bool):
        raise TypeError(f"positions must be integer positions, got dtype {positions.dtype}")
    if isinstance(positions, Tensor) and positions.numel() == 0:
        return  # the shape check in _per_prompt explains this one
    low, high = (positions, positions) if isinstance(positions, int) else (int(positions.min()), int(positions.max()))
    if low < -n_positions or high >= n_positions:
        bad = low if low < -n_positions else high
        raise ValueError(f"answer position {bad} is out of range for logits with {n_positions} positions (use -{n_positions}..{n_positions - 1})")


class AnswerMetric(ABC):
    """A metric of the logits at one position per prompt (the position that predicts the answer).

    Subclasses implement ``per_prompt``; sweeps call ``from_answer_logits`` on the answer positions'
    logits only, so a subclass must not override ``__call__`` to read other positions.
    """

    def __init__(self, positions: Positions = -1, reduction: Reduction = "mean") -> None:
        self.positions = positions
        self.reduction = _check_reduction(reduction)

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        if not isinstance(logits, Tensor) or logits.ndim != 3:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"{type(self).__name__} takes logits [batch pos d_vocab], got {shape}")
        return self.from_answer_logits(self.answer_logits(logits))

    def answer_logits(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch d_vocab"]:
        _check_positions(self.positions, logits.shape[1])
        positions = _per_prompt(self.positions, logits.shape[0], logits.device, "positions")
        return logits[torch.arange(logits.shape[0], device=logits.device), positions]

    def from_answer_logits(self, answer_logits: Float[Tensor, "batch d_vocab"]) -> Tensor:
        """The metric from the logits at the answer positions only (what fast sweeps call)."""
        return reduce(self.per_prompt(answer_logits), self.reduction)

    @abstractmethod
    def per_prompt(self, answer_logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch"]:
        """One value per prompt from the answer-position logits."""


class LogitDiff(AnswerMetric):
    """``logit[answer] - logit[wrong]`` at the answer position (e.g. IO minus S in IOI)."""

    def __init__(
        self,
        answer_tokens: TokenIds,
        wrong_tokens: TokenIds,
        positions: Positions = -1,
        reduction: Reduction = "mean",
        d_vocab: int | None = None,
    ) -> None:
        """``d_vocab`` (optional) checks the ids now rather than at the first call."""
        super().__init__(positions, reduction)
        self.answer_tokens, self.wrong_tokens = answer_tokens, wrong_tokens
        self._largest_ids = {
            "answer_tokens": _token_id_range(answer_tokens, "answer_tokens", d_vocab)[1],
            "wrong_tokens": _token_id_range(wrong_tokens, "wrong_tokens", d_vocab)[1],
        }

    def per_prompt(self, answer_logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch"]:
        for what, high in self._largest_ids.items():
            _check_in_vocab(what, high, answer_logits.shape[-1])
        batch, device = answer_logits.shape[0], answer_logits.device
        right = _per_prompt(self.answer_tokens, batch, device, "answer_tokens")
        wrong = _per_prompt(self.wrong_tokens, batch, device, "wrong_tokens")
        rows = torch.arange(batch, device=device)
        return answer_logits[rows, right] - answer_logits[rows, wrong]


class AnswerLogProb(AnswerMetric):
    """Log-probability of the answer token at the answer position."""

    def __init__(
        self, answer_tokens: TokenIds, positions: Positions = -1, reduction: Reduction = "mean", d_vocab: int | None = None
    ) -> None:
        """``d_vocab`` (optional) checks the ids now rather than at the first call."""
        super().__init__(positions, reduction)
        self.answer_tokens = answer_tokens
        self._largest_id = _token_id_range(answer_tokens, "answer_tokens", d_vocab)[1]

    def per_prompt(self, answer_logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch"]:
        _check_in_vocab("answer_tokens", self._largest_id, answer_logits.shape[-1])
        batch, device = answer_logits.shape[0], answer_logits.device
        answers = _per_prompt(self.answer_tokens, batch, device, "answer_tokens")
        log_probs = answer_logits.float().log_softmax(-1)
        return log_probs[torch.arange(batch, device=device), answers]


class AnswerProb(AnswerLogProb):
    """Probability of the answer token at the answer position."""

    def per_prompt(self, answer_logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch"]:
        return super().per_prompt(answer_logits).exp()


class NextTokenLoss:
    """Next-token cross-entropy of ``tokens``, averaged over positions (then per ``reduction`` over prompts).

    Reads every position, so sweeps unembed them all.
    """

    def __init__(self, tokens: Int[Tensor, "batch pos"], reduction: Reduction = "mean", d_vocab: int | None = None) -> None:
        """``d_vocab`` (optional) checks the ids now rather than at the first call."""
        if not isinstance(tokens, Tensor) or tokens.ndim != 2:
            shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"NextTokenLoss takes the tokens [batch pos], got {shape}")
        _token_id_range(tokens.flatten(), "tokens", d_vocab)
        self.tokens = tokens
        self.reduction = _check_reduction(reduction)

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        per_token = lm_cross_entropy_loss(logits, self.tokens.to(logits.device), per_token=True)
        return reduce(per_token.mean(-1), self.reduction)


class NormalizedMetric:
    """``(metric - corrupted_value) / (clean_value - corrupted_value)``: 1 at the clean run, 0 at the corrupted.

    Values are scalars, or ``[batch]`` to normalise each prompt by its own runs (for ``reduction="none"``).
    """

    def __init__(self, metric: Metric, clean_value: float | Tensor, corrupted_value: float | Tensor) -> None:
        self.metric = metric
        self.clean_value = torch.as_tensor(clean_value, dtype=torch.float32)
        self.corrupted_value = torch.as_tensor(corrupted_value, dtype=torch.float32)
        gap = self.clean_value - self.corrupted_value
        if bool((gap == 0).any()):
            raise ValueError(
                f"clean_value and corrupted_value are equal ({self.clean_value.tolist()}), so the metric cannot be "
                "normalised: the corruption does not change it; choose a corruption that does, or a different metric"
            )

    def normalize(self, value: Tensor) -> Tensor:
        clean, corrupted = self.clean_value.to(value.device), self.corrupted_value.to(value.device)
        return (value.float() - corrupted) / (clean - corrupted)

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        return self.normalize(self.metric(logits))


class NormalizedAnswerMetric(NormalizedMetric, AnswerMetric):
    """A normalised ``AnswerMetric``; it keeps the answer positions, so sweeps stay fast."""

    def __init__(self, metric: AnswerMetric, clean_value: float | Tensor, corrupted_value: float | Tensor) -> None:
        NormalizedMetric.__init__(self, metric, clean_value, corrupted_value)
        AnswerMetric.__init__(self, metric.positions, metric.reduction)

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        return AnswerMetric.__call__(self, logits)

    def from_answer_logits(self, answer_logits: Float[Tensor, "batch d_vocab"]) -> Tensor:
        return self.normalize(self.metric.from_answer_logits(answer_logits))

    def per_prompt(self, answer_logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch"]:
        return self.metric.per_prompt(answer_logits)


def normalized(metric: Metric, clean_value: float | Tensor, corrupted_value: float | Tensor) -> NormalizedMetric:
    """``metric`` rescaled so the clean run scores 1 and the corrupted run 0 (an ``AnswerMetric`` stays one)."""
    if isinstance(metric, AnswerMetric):
        return NormalizedAnswerMetric(metric, clean_value, corrupted_value)
    return NormalizedMetric(metric, clean_value, corrupted_value)


def normalized_between(
    metric: Metric, clean_logits: Float[Tensor, "batch pos d_vocab"], corrupted_logits: Float[Tensor, "batch pos d_vocab"]
) -> NormalizedMetric:
    """``normalized`` with the clean and corrupted values computed from the two runs' logits."""
    with torch.no_grad():
        return normalized(metric, metric(clean_logits).detach(), metric(corrupted_logits).detach())
