"""How circuit analyses account for the LayerNorm or RMSNorm in front of a head or the unembedding.

A LayerNorm maps a residual vector ``x`` to ``(x - mean(x)) / scale(x) * w + b`` with
``scale = sqrt(mean((x - mean x)^2) + eps)``; an RMSNorm maps it to ``x / scale(x) * w`` with
``scale = sqrt(mean(x^2) + eps)`` (no centring, no bias). Everything but the scale is linear, so a
weight ``W`` that reads the norm's output reads the raw residual stream through ``C diag(w) W``
(``C`` removes the mean over ``d_model``, LayerNorm only), divided by a per-position scalar. The
circuit analyses therefore:

- fold ``w`` (and, for LayerNorm, the centring) into the reading weights (``W_Q``, ``W_K``, ``W_V``
  and ``W_U``): ``fold_into_reader``, the same rule as weight processing's ``fold_layer_norm``
  (``components.normalization.fold_norm_into_weight``). For ``LNPre``/``RMSPre`` there is no ``w`` to
  fold; without normalisation nothing is folded.
- divide each embedding row (token or position) by the scale the norm would give that row alone:
  ``scale_embedding_rows``. This is the "direct path" picture: the head sees only that embedding,
  not the sum of embeddings and earlier outputs it really gets.
- leave out the LayerNorm bias ``b``, as they leave out ``b_Q``, ``b_K``, ``b_V``: circuits are the
  bilinear (QK) or linear (OV) part of the map.
- leave out the final norm's scale: it is one positive number per position, so it rescales a
  row of logits without changing its order.

With ``fold_layer_norm=False`` the analyses use the weights as stored (TransformerLens's
behaviour on a model whose norms were not folded at load time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_transformer.components.normalization import NormalizationPre, fold_norm_into_weight

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


def fold_into_reader(weight: Float[Tensor, "... d_model n"], norm: nn.Module) -> Float[Tensor, "... d_model n"]:
    """``C diag(w) W``: what ``W`` applied after ``norm`` does to the raw residual stream (up to the scale)."""
    if isinstance(norm, nn.Identity):
        return weight
    return fold_norm_into_weight(weight, getattr(norm, "w", None), centre=_centres(norm))


def fold_into_readers_by_layer(
    model: "HookedTransformer", weight: Float[Tensor, "layer head_index d_model d_head"]
) -> Float[Tensor, "layer head_index d_model d_head"]:
    """``fold_into_reader`` with each layer's ``ln1`` applied to that layer's heads."""
    return torch.stack([fold_into_reader(weight[layer], block.ln1) for layer, block in enumerate(model.blocks)])


def scale_embedding_rows(model: "HookedTransformer", rows: Float[Tensor, "row d_model"]) -> Float[Tensor, "row d_model"]:
    """Each row divided by the scale ``ln1`` would give it on its own (unchanged without normalisation)."""
    norm = model.blocks[0].ln1
    if isinstance(norm, nn.Identity):
        return rows
    centred = rows - rows.mean(dim=-1, keepdim=True) if _centres(norm) else rows
    return rows / (centred.pow(2).mean(dim=-1, keepdim=True) + norm.eps).sqrt()


def _centres(norm: nn.Module) -> bool:
    """True for LayerNorm (it removes the mean), False for RMSNorm; anything else is refused by name."""
    if isinstance(norm, NormalizationPre):  # LayerNorm(Pre) and RMSNorm(Pre) share it and say whether they centre
        return norm.centres
    raise TypeError(
        f"circuits know how to fold LayerNorm, RMSNorm (with or without weights) or no normalisation, "
        f"got a {type(norm).__name__}; pass fold_layer_norm=False to use the stored weights"
    )
