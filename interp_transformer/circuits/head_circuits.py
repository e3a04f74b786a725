"""Per-head QK and OV circuits ``[layer head_index d_model d_model]`` as read from the raw residual stream.

``model.QK`` / ``model.OV`` are the weights as stored (``W_Q W_K^T`` and ``W_V W_O``). These
functions default to folding each head's ``ln1`` into its reading side (see
``layer_norm_folding``), so the circuits map residual-stream vectors, which is what composition
between heads is about. ``fold_layer_norm=False`` gives exactly ``model.QK`` / ``model.OV``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxtyping import Float
from torch import Tensor

from interp_transformer.factored_matrix import FactoredMatrix
from interp_transformer.circuits.layer_norm_folding import fold_into_readers_by_layer

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


def reading_weights(model: "HookedTransformer", name: str, fold_layer_norm: bool = True) -> Float[Tensor, "layer head_index d_model d_head"]:
    """``W_Q``, ``W_K`` or ``W_V`` stacked over layers, with ``ln1`` folded in unless asked not to."""
    if name not in ("W_Q", "W_K", "W_V"):
        raise ValueError(f"reading weights are 'W_Q', 'W_K' or 'W_V', got {name!r}")
    weight = getattr(model, name)
    return fold_into_readers_by_layer(model, weight) if fold_layer_norm else weight


def qk_circuits(model: "HookedTransformer", fold_layer_norm: bool = True) -> FactoredMatrix:
    """``W_Q W_K^T`` of every head, ``[layer head_index d_model d_model]`` (query side rows, key side columns)."""
    W_Q = reading_weights(model, "W_Q", fold_layer_norm)
    W_K = reading_weights(model, "W_K", fold_layer_norm)
    return FactoredMatrix(W_Q, W_K.transpose(-2, -1))


def ov_circuits(model: "HookedTransformer", fold_layer_norm: bool = True) -> FactoredMatrix:
    """``W_V W_O`` of every head, ``[layer head_index d_model d_model]`` (residual in, residual out)."""
    return FactoredMatrix(reading_weights(model, "W_V", fold_layer_norm), model.W_O)
