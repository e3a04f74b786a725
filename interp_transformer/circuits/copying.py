"""Copying scores: does a head's OV circuit, from source token to output logit, copy the token it attends to?

A head that copies raises the logit of the token it reads, so its full OV circuit ``W_E W_OV W_U``
has mostly positive eigenvalues. Elhage et al. (2021) summarise the spectrum by
``Re(sum(eigenvalues)) / sum(|eigenvalues|)``: 1 for a pure copier, -1 for a pure anti-copier,
near 0 for a random matrix.

The ``[d_vocab d_vocab]`` circuit has rank ``d_head`` and shares its nonzero eigenvalues with the
``[d_head d_head]`` matrix ``W_O W_U W_E W_V``. ``W_U W_E`` ``[d_model d_model]`` is the same for
every head, so it is formed once and each head costs two small products; nothing of size
``d_vocab x d_head`` per head is ever built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import einops
import torch
from jaxtyping import Complex, Float
from torch import Tensor

from interp_transformer.circuits.full_circuits import unembedding_as_read
from interp_transformer.circuits.head_circuits import reading_weights
from interp_transformer.circuits.layer_norm_folding import scale_embedding_rows

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


def ov_unembed_eigenvalues(
    model: "HookedTransformer", fold_layer_norm: bool = True
) -> Complex[Tensor, "layer head_index d_head"]:
    """The nonzero eigenvalues of every head's ``ov_unembed_circuit`` (the same LayerNorm handling)."""
    if model.cfg.d_vocab != model.cfg.d_vocab_out:
        raise ValueError(
            f"the OV circuit to the unembedding is square only when d_vocab == d_vocab_out, got "
            f"{model.cfg.d_vocab} and {model.cfg.d_vocab_out}; eigenvalues need a square matrix"
        )
    with torch.no_grad():
        embedding = scale_embedding_rows(model, model.W_E) if fold_layer_norm else model.W_E
        W_V = reading_weights(model, "W_V", fold_layer_norm)
        unembed_then_embed = unembedding_as_read(model, fold_layer_norm) @ embedding  # [d_model d_model]
        output_then_source = einops.einsum(
            model.W_O, unembed_then_embed, W_V,
            "layer head_index d_head_out d_model_u, d_model_u d_model_e, layer head_index d_model_e d_head_in "
            "-> layer head_index d_head_out d_head_in",
        )
        if output_then_source.dtype in (torch.float16, torch.bfloat16):
            output_then_source = output_then_source.float()  # eig has no half-precision kernel
        return torch.linalg.eigvals(output_then_source)


def copying_score_from_eigenvalues(eigenvalues: Complex[Tensor, "... eig"]) -> Float[Tensor, "..."]:
    """``Re(sum(eigenvalues)) / sum(|eigenvalues|)`` over the last axis, in [-1, 1]."""
    return eigenvalues.sum(-1).real / eigenvalues.abs().sum(-1)


def copying_scores(model: "HookedTransformer", fold_layer_norm: bool = True) -> Float[Tensor, "layer head_index"]:
    """Copying score of every head's full OV circuit (see the module docstring)."""
    return copying_score_from_eigenvalues(ov_unembed_eigenvalues(model, fold_layer_norm))
