"""TrainingSettings: how ``train_sae`` trains (frozen, validated); the part that must match to resume a run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("float32", "bfloat16")
# Settings that may change between a run and its resumption: they do not change what is computed.
# (There is no learning-rate schedule, so ``steps`` only says where to stop: a finished run can be extended.)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every")


@dataclass(frozen=True)
class TrainingSettings:
    """Hyperparameters of ``train_sae`` (names as in SAELens where it has one).

    - ``steps``: optimizer steps; each reads ``batch_size`` activation rows (tokens).
    - ``lr``, ``adam_beta1``, ``adam_beta2``: Adam, constant learning rate.
    - ``l1_coefficient``: the sparsity penalty of the ``standard`` (ReLU) architecture, on
      ``sum_i |f_i| * ||W_dec[i]||`` per row (decoder-norm weighted, so shrinking the decoder cannot cheat it).
    - ``aux_coefficient``: the AuxK loss of the TopK architectures (Gao et al. 2024): the ``d_in // 2`` most
      active dead features are asked to reconstruct what the live ones missed, which gives dead features
      a gradient. 0 turns it off.
    - ``dead_after_tokens``: a feature that has not fired for this many tokens is dead.
    - ``resample_every``: every this many steps, re-initialise dead features on inputs the dictionary
      reconstructs badly (Anthropic's resampling, 2023); ``None`` never resamples.
    - ``buffer_size``: rows in the shuffling buffer (the memory bound of reading the store).
    - ``precision``: ``"bfloat16"`` runs the matmuls under autocast (weights and optimizer stay float32).
    - ``seed``: the initial weights, the data order and the resampling draws all follow from it.
    """

    steps: int = 1000
    batch_size: int = 4096
    lr: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    l1_coefficient: float = 1.0
    aux_coefficient: float = 1 / 32
    dead_after_tokens: int = 1_000_000
    resample_every: int | None = None
    buffer_size: int = 2**18
    precision: str = "float32"
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "dead_after_tokens", "buffer_size", "checkpoint_every", "log_every"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.resample_every is not None:
            _check_int("resample_every", self.resample_every, minimum=1)
        _check_number("lr", self.lr, positive=True)
        for name in ("l1_coefficient", "aux_coefficient"):
            _check_number(name, getattr(self, name), positive=False)
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            _check_number(name, value, positive=False)
            if not value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not supported; use one of {list(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "TrainingSettings":
        """Settings from keyword arguments, naming any keyword that is not a setting."""
        unknown = sorted(set(overrides) - set(cls.field_names()))
        if unknown:
            raise TypeError(f"train_sae got unknown settings {unknown}; the settings are {cls.field_names()}")
        return cls(**overrides)

    def differences_that_block_resume(self, stored: dict[str, Any]) -> list[str]:
        """``name: stored X, now Y`` for every setting that differs from a checkpoint's and changes the result."""
        now = self.to_dict()
        return [
            f"{name}: stored {stored.get(name)!r}, now {now[name]!r}"
            for name in now
            if name not in RESUMABLE_CHANGES and stored.get(name) != now[name]
        ]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int of at least {minimum}, got {value!r}")


def _check_number(name: str, value: Any, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
