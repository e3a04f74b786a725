"""Choosing heads by (layer, head) with range checks, shared by every circuit analysis."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


def check_layer(model: "HookedTransformer", layer: Any) -> int:
    """``layer`` as a non-negative index, or a ValueError naming the valid range."""
    n_layers = model.cfg.n_layers
    index = _as_index(layer)
    if index is None:
        raise TypeError(f"layer must be an int, got {type(layer).__name__} {layer!r}")
    if not -n_layers <= index < n_layers:
        raise ValueError(f"layer {layer!r} is out of range for a model with {n_layers} layers (use 0..{n_layers - 1})")
    return index % n_layers


def check_head(model: "HookedTransformer", head: Any) -> int:
    """``head`` as a non-negative index, or a ValueError naming the valid range."""
    n_heads = model.cfg.n_heads
    index = _as_index(head)
    if index is None:
        raise TypeError(f"head must be an int, got {type(head).__name__} {head!r}")
    if not -n_heads <= index < n_heads:
        raise ValueError(f"head {head!r} is out of range for a model with {n_heads} heads per layer (use 0..{n_heads - 1})")
    return index % n_heads


def _as_index(value: Any) -> int | None:
    """An int from anything integer-like (int, numpy or 0-d torch integers); None for bools and everything else."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def head_index(model: "HookedTransformer", layer: int | None, head: int | None) -> tuple:
    """An index into ``[layer head_index ...]`` tensors: None keeps that axis whole, an int selects (and drops) it."""
    layer_index = slice(None) if layer is None else check_layer(model, layer)
    head_position = slice(None) if head is None else check_head(model, head)
    return layer_index, head_position


def head_labels(n_layers: int, n_heads: int) -> list[str]:
    """``["L0H0", "L0H1", ...]`` in ``[layer head_index]`` order."""
    return [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
