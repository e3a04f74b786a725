"""How circuit analyses account for the LayerNorm in front of a head or the unembedding.

A LayerNorm maps a residual vector ``x`` to ``(x - mean(x)) / scale(x) * w + b``. Everything in it
is linear except the scale, so a weight ``W`` that reads its output reads the raw residual stream
through ``C diag(w) W`` (``C`` removes the mean over ``d_model``), divided by a per-position
scalar. The circuit analyses therefore:

- fold the centring and ``w`` into the reading weights (``W_Q``, ``W_K``, ``W_V`` and ``W_U``):
  ``fold_into_reader``. For ``LNPre`` only the centring is folded; without normalisation nothing is.
- divide each embedding row (token or position) by the scale the LayerNorm would give that row
  alone, ``sqrt(var(row) + eps)``: ``scale_embedding_rows``. This is the "direct path" picture: the
  head sees only that embedding, not the sum of embeddings and earlier outputs it really gets.
- leave out the LayerNorm bias ``b``, as they leave out ``b_Q``, ``b_K``, ``b_V``: circuits are the
  bilinear (QK) or linear (OV) part of the map.
- leave out the final LayerNorm's scale: it is one positive number per position, so it rescales a
  row of logits without changing its order.

With ``fold_layer_norm=False`` the analyses use the weights as stored (TransformerLens's
behaviour on a model whose LayerNorms were not folded at load time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.components.layer_norm import LayerNorm, LayerNormPre

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


def fold_into_reader(weight: Float[Tensor, "... d_model n"], layer_norm: nn.Module) -> Float[Tensor, "... d_model n"]:
    """``C diag(w) W``: what ``W`` applied after ``layer_norm`` does to the raw residual stream (up to the scale)."""
    if isinstance(layer_norm, LayerNorm):
        weight = layer_norm.w[:, None] * weight
    if isinstance(layer_norm, LayerNormPre):  # LayerNorm subclasses it: both centre
        weight = weight - weight.mean(dim=-2, keepdim=True)
    return weight


def fold_into_readers_by_layer(
    model: "HookedTransformer", weight: Float[Tensor, "layer head_index d_model d_head"]
) -> Float[Tensor, "layer head_index d_model d_head"]:
    """``fold_into_reader`` with each layer's ``ln1`` applied to that layer's heads."""
    return torch.stack([fold_into_reader(weight[layer], block.ln1) for layer, block in enumerate(model.blocks)])


def scale_embedding_rows(model: "HookedTransformer", rows: Float[Tensor, "row d_model"]) -> Float[Tensor, "row d_model"]:
    """Each row divided by the LayerNorm scale it would get on its own (unchanged without normalisation)."""
    if model.cfg.normalization_type is None:
        return rows
    var = rows.var(dim=-1, correction=0, keepdim=True)
    return rows / (var + model.cfg.layer_norm_eps).sqrt()
