"""Full circuits: a head's QK and OV maps expressed between tokens or positions, kept factored.

- ``token_qk_circuit``: ``W_E W_QK W_E^T`` ``[d_vocab d_vocab]``, the attention score (before the
  ``1/attn_scale`` factor) from a query token to a key token through the direct path.
- ``positional_qk_circuit``: ``W_pos W_QK W_pos^T`` ``[query_pos key_pos]``, the same for positions.
- ``ov_unembed_circuit``: ``W_E W_OV W_U`` ``[d_vocab d_vocab_out]``, the logits a head adds for
  each output token when it attends to each source token.

``layer`` and ``head`` pick one head (both ints), one layer (``head=None``) or all heads (both
None); the leading axes of the result are the ones left unpicked, as in ``model.QK[layer, head]``.
All heads of a large model is big even factored: ``[layer head_index d_vocab d_head]`` per factor.

The LayerNorm/RMSNorm handling (``fold_layer_norm=True``, the default) is described in
``layer_norm_folding``: ``ln1.w`` and (LayerNorm only) the centring are folded into the head's
reading weights, and each embedding row is divided by the scale the norm would give that row
alone; the final norm's ``w`` and centring are folded into ``W_U`` the same way. Biases are not part of a circuit.
``fold_layer_norm=False`` uses the stored weights (TransformerLens's ``W_E @ model.QK @ W_E.T``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import einops
from jaxtyping import Float
from torch import Tensor

from interp_transformer.factored_matrix import FactoredMatrix
from interp_transformer.circuits.head_circuits import reading_weights
from interp_transformer.circuits.heads import head_index
from interp_transformer.circuits.layer_norm_folding import fold_into_reader, scale_embedding_rows

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


def token_qk_circuit(
    model: "HookedTransformer", layer: int | None = None, head: int | None = None, fold_layer_norm: bool = True
) -> FactoredMatrix:
    """``W_E W_Q W_K^T W_E^T``: ``[... d_vocab d_vocab]``, query tokens on rows, key tokens on columns."""
    embedding = _embedding_as_read(model, model.W_E, fold_layer_norm)
    return _bilinear_circuit(model, embedding, layer, head, fold_layer_norm)


def positional_qk_circuit(
    model: "HookedTransformer", layer: int | None = None, head: int | None = None, fold_layer_norm: bool = True
) -> FactoredMatrix:
    """``W_pos W_Q W_K^T W_pos^T``: ``[... query_pos key_pos]`` over all ``n_ctx`` positions."""
    embedding = _embedding_as_read(model, model.W_pos, fold_layer_norm)
    return _bilinear_circuit(model, embedding, layer, head, fold_layer_norm)


def ov_unembed_circuit(
    model: "HookedTransformer", layer: int | None = None, head: int | None = None, fold_layer_norm: bool = True
) -> FactoredMatrix:
    """``W_E W_V W_O W_U``: ``[... d_vocab d_vocab_out]``, source tokens on rows, output logits on columns."""
    index = head_index(model, layer, head)
    embedding = _embedding_as_read(model, model.W_E, fold_layer_norm)
    W_V = reading_weights(model, "W_V", fold_layer_norm)[index]
    W_U = unembedding_as_read(model, fold_layer_norm)
    source = einops.einsum(embedding, W_V, "d_vocab d_model, ... d_model d_head -> ... d_vocab d_head")
    output = einops.einsum(model.W_O[index], W_U, "... d_head d_model, d_model d_vocab_out -> ... d_head d_vocab_out")
    return FactoredMatrix(source, output)


def unembedding_as_read(model: "HookedTransformer", fold_layer_norm: bool = True) -> Float[Tensor, "d_model d_vocab_out"]:
    """``W_U`` with the final LayerNorm's centring and ``w`` folded in (its scale left out)."""
    return fold_into_reader(model.W_U, model.ln_final) if fold_layer_norm else model.W_U


def _embedding_as_read(model: "HookedTransformer", rows: Tensor, fold_layer_norm: bool) -> Float[Tensor, "row d_model"]:
    return scale_embedding_rows(model, rows) if fold_layer_norm else rows


def _bilinear_circuit(
    model: "HookedTransformer", embedding: Float[Tensor, "row d_model"], layer: int | None, head: int | None, fold_layer_norm: bool
) -> FactoredMatrix:
    index = head_index(model, layer, head)
    W_Q = reading_weights(model, "W_Q", fold_layer_norm)[index]
    W_K = reading_weights(model, "W_K", fold_layer_norm)[index]
    query = einops.einsum(embedding, W_Q, "row d_model, ... d_model d_head -> ... row d_head")
    key = einops.einsum(embedding, W_K, "row d_model, ... d_model d_head -> ... d_head row")
    return FactoredMatrix(query, key)
