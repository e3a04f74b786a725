"""How many patch locations fit in one forward: the memory budget and the per-location estimate."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from interp_transformer.config import TransformerConfig

MemoryBudget = Union[int, str]
DEFAULT_MEMORY_BUDGET = "1GB"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_BUDGET = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*")


def parse_memory_budget(budget: MemoryBudget) -> int:
    """Bytes from an int or a string such as ``"512MB"``, ``"2GiB"``, ``"1.5GB"``."""
    if isinstance(budget, bool) or not isinstance(budget, (int, str)):
        raise TypeError(f"memory_budget must be bytes (an int) or a string like '512MB', got {budget!r}")
    if isinstance(budget, str):
        match = _BUDGET.fullmatch(budget.lower())
        if match is None or match.group(2) not in _UNITS:
            raise ValueError(
                f"memory_budget {budget!r} is not understood; write e.g. '512MB', '2GB' or '1GiB', or pass bytes as an int"
            )
        budget = int(float(match.group(1)) * _UNITS[match.group(2)])
    if budget <= 0:
        raise ValueError(f"memory_budget must be positive, got {budget} bytes")
    return budget


def bytes_per_location(cfg: "TransformerConfig", batch: int, n_pos: int, full_logits: bool, explicit_attention: bool) -> int:
    """A generous estimate of the memory one patched copy of the batch needs at peak in a forward.

    Counts the widest activations alive together (residual stream, q/k/v, MLP hidden layer,
    attention scores and pattern when they are materialised) and the logits twice (a metric
    often takes a log-softmax of them). With ``full_logits=False`` only one position per prompt
    is unembedded (see ``metrics.AnswerMetric``).
    """
    item = cfg.dtype.itemsize
    per_token = 8 * cfg.d_model + 3 * (cfg.d_mlp or 0) + (2 if not explicit_attention else 4) * cfg.n_heads * n_pos
    if cfg.use_split_qkv_input:
        per_token += 6 * cfg.n_heads * cfg.d_model
    if cfg.use_attn_result:
        per_token += cfg.n_heads * cfg.d_model
    logits = 2 * cfg.d_vocab_out * (n_pos if full_logits else 1)
    return batch * (n_pos * per_token + logits) * item


def locations_per_forward(budget: MemoryBudget, per_location: int, cap: int | None) -> int:
    """The chunk size: as many locations as the budget holds, at most ``cap``."""
    budget_bytes = parse_memory_budget(budget)
    if per_location > budget_bytes:
        raise ValueError(
            f"memory_budget={budget!r} ({budget_bytes:,} bytes) is too small for even one patched run of this batch, "
            f"which needs about {per_location:,} bytes; raise memory_budget to at least {_human(per_location)}, "
            "or patch fewer prompts (or shorter ones) at a time"
        )
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"max_locations_per_forward must be a positive int or None, got {cap!r}")
    fits = budget_bytes // per_location
    return fits if cap is None else min(fits, cap)


def _human(n_bytes: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n_bytes >= size:
            return f"'{-(-n_bytes * 10 // size) / 10:g}{unit}'"
    return f"{n_bytes}"
