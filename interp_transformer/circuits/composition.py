"""Q-, K- and V-composition scores between heads (Elhage et al. 2021), and their random baseline.

The score of a writing matrix ``W_A`` (an earlier head's OV circuit) and a reading matrix ``W_B``
is ``||W_A W_B||_F / (||W_A||_F ||W_B||_F)``, in [0, 1]. With residual vectors as rows (``x W``):

- Q-composition: ``W_B = W_QK`` of the later head (``OV`` output read by its queries),
- K-composition: ``W_B = W_QK^T`` (read by its keys),
- V-composition: ``W_B = W_OV`` (read by its values),

exactly TransformerLens's ``all_composition_scores`` / ``utils.composition_scores``. For two random
matrices of rank ``d_head`` in ``d_model`` dimensions, ``E[score^2] = 1 / d_model`` exactly (one of
them rotated uniformly at random), so scores are read against about ``1 / sqrt(d_model)``.

All norms come from the factors. With ``W_A = A_1 B_1``, ``W_B = A_2 B_2`` and QR factorisations
``A_1 = Q_1 R_1``, ``B_2^T = Q_2 R_2``, orthonormal ``Q``s drop out of the Frobenius norm:
``||W_A W_B|| = ||(R_1 B_1) (A_2 R_2^T)||``, a ``[d_head d_head]`` product per pair. Every pair of
heads is then one matrix multiply ``[pairs_left*d_head d_model] @ [d_model pairs_right*d_head]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp_transformer.factored_matrix import FactoredMatrix
from interp_transformer.circuits.head_circuits import ov_circuits, qk_circuits

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

CompositionMode = Literal["Q", "K", "V"]
MODES = ("Q", "K", "V")


def composition_score(left: FactoredMatrix, right: FactoredMatrix) -> Float[Tensor, "..."]:
    """``||left @ right|| / (||left|| ||right||)``, with the leading axes of the two broadcast together."""
    _check_chain(left, right)
    rows, cols = _row_space_factor(left), _column_space_factor(right)  # [... k_l d], [... d k_r]
    product = (rows @ cols).flatten(-2).norm(dim=-1)
    return product / (rows.flatten(-2).norm(dim=-1) * cols.flatten(-2).norm(dim=-1))


def pairwise_composition_scores(left: FactoredMatrix, right: FactoredMatrix) -> Float[Tensor, "..."]:
    """Scores of every left matrix with every right matrix: ``[*left_leading *right_leading]``."""
    _check_chain(left, right)
    rows, cols = _row_space_factor(left), _column_space_factor(right)
    return _pairwise_scores(rows, cols)


def all_composition_scores(
    model: "HookedTransformer", mode: CompositionMode, fold_layer_norm: bool = True
) -> Float[Tensor, "layer head_index layer head_index"]:
    """``scores[l1, h1, l2, h2]``: how much head (l2, h2) reads head (l1, h1)'s output; zero unless ``l1 < l2``.

    ``mode`` is "Q", "K" or "V". By default each head's ``ln1`` is folded into its reading weights
    (``layer_norm_folding``); ``fold_layer_norm=False`` uses ``model.OV`` and ``model.QK`` as
    TransformerLens does.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    with torch.no_grad():
        ov = ov_circuits(model, fold_layer_norm)
        qk = qk_circuits(model, fold_layer_norm)
        right = {"Q": qk, "K": qk.T, "V": ov}[mode]
        rows, cols = _row_space_factor(ov), _column_space_factor(right)  # [layer head_index k d_model], [... d_model k]
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        scores = rows.new_zeros(n_layers, n_heads, n_layers, n_heads)
        for layer in range(n_layers - 1):  # only later heads can read an earlier head's output
            scores[layer, :, layer + 1 :] = _pairwise_scores(rows[layer], cols[layer + 1 :])
    return scores


def random_composition_baseline(d_model: int, d_head: int, n_samples: int = 256, seed: int = 0) -> float:
    """Mean composition score of random matrices shaped like heads: ``[d_model d_head] @ [d_head d_model]`` each.

    Gaussian factors; the score does not depend on their scale. Close to (just under) ``1 / sqrt(d_model)``.
    """
    if d_model < 1 or d_head < 1 or n_samples < 1:
        raise ValueError(f"d_model, d_head and n_samples must be positive, got {d_model}, {d_head}, {n_samples}")
    generator = torch.Generator().manual_seed(seed)

    def random_head() -> FactoredMatrix:
        factors = torch.randn(2, n_samples, d_model, d_head, generator=generator, dtype=torch.float64)
        return FactoredMatrix(factors[0], factors[1].transpose(-2, -1))

    return composition_score(random_head(), random_head()).mean().item()


def _check_chain(left: FactoredMatrix, right: FactoredMatrix) -> None:
    if left.rdim != right.ldim:
        raise ValueError(
            f"cannot compose matrices of shapes {list(left.shape)} and {list(right.shape)}: "
            "left's columns must match right's rows"
        )


def _row_space_factor(matrix: FactoredMatrix) -> Float[Tensor, "... k rdim"]:
    """``R B`` where ``A = Q R``: same Frobenius norm as ``AB`` under any right-multiplication."""
    _, R = torch.linalg.qr(_at_least_float32(matrix.A))
    return R @ _at_least_float32(matrix.B)


def _column_space_factor(matrix: FactoredMatrix) -> Float[Tensor, "... ldim k"]:
    """``A R^T`` where ``B^T = Q R``: same Frobenius norm as ``AB`` under any left-multiplication."""
    _, R = torch.linalg.qr(_at_least_float32(matrix.B).transpose(-2, -1))
    return _at_least_float32(matrix.A) @ R.transpose(-2, -1)


def _pairwise_scores(rows: Float[Tensor, "... k_l d"], cols: Float[Tensor, "... d k_r"]) -> Tensor:
    left_leading, right_leading = rows.shape[:-2], cols.shape[:-2]
    k_left, d = rows.shape[-2:]
    k_right = cols.shape[-1]
    # One GEMM for all pairs: [left*k_l d] @ [d right*k_r], then a norm over each [k_l k_r] block.
    flat_rows = rows.reshape(-1, d)
    flat_cols = cols.reshape(-1, d, k_right).permute(1, 0, 2).reshape(d, -1)
    blocks = (flat_rows @ flat_cols).view(-1, k_left, flat_cols.shape[-1] // k_right, k_right)
    products = blocks.square().sum((1, 3)).sqrt()
    row_norms = rows.reshape(-1, k_left * d).norm(dim=-1)
    col_norms = cols.reshape(-1, d * k_right).norm(dim=-1)
    scores = products / (row_norms[:, None] * col_norms[None, :])
    return scores.view(*left_leading, *right_leading)


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
