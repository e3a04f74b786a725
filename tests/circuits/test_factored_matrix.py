"""FactoredMatrix: every operation against the dense product, for inner width below, equal to and above the matrix size."""

from __future__ import annotations

import pytest
import torch

from interp_transformer.circuits import FactoredMatrix

LEADING = (2, 3)
# (ldim, mdim, rdim): the product's rank is min(ldim, mdim, rdim).
SQUARE_CASES = {"rank<dims": (6, 3, 6), "rank==dims": (5, 5, 5), "rank>dims": (4, 7, 4)}
RECTANGULAR_CASES = {"rank<dims": (6, 3, 5), "rank==dims": (5, 5, 5), "rank>dims": (4, 7, 3)}


def make(ldim: int, mdim: int, rdim: int, seed: int = 0) -> tuple[FactoredMatrix, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(*LEADING, ldim, mdim, generator=generator, dtype=torch.float64)
    B = torch.randn(*LEADING, mdim, rdim, generator=generator, dtype=torch.float64)
    return FactoredMatrix(A, B), A @ B


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != dense {tuple(expected.shape)}"
    torch.testing.assert_close(actual, expected, atol=1e-10, rtol=1e-10, msg=lambda m: f"{what} differs from dense math: {m}")


@pytest.fixture(params=list(RECTANGULAR_CASES), ids=list(RECTANGULAR_CASES))
def rectangular(request) -> tuple[FactoredMatrix, torch.Tensor]:
    return make(*RECTANGULAR_CASES[request.param])


@pytest.fixture(params=list(SQUARE_CASES), ids=list(SQUARE_CASES))
def square(request) -> tuple[FactoredMatrix, torch.Tensor]:
    return make(*SQUARE_CASES[request.param])


def test_shape_ndim_and_products(rectangular):
    fm, dense = rectangular
    assert fm.shape == dense.shape and fm.ndim == dense.ndim == 4
    assert (fm.ldim, fm.rdim) == dense.shape[-2:]
    assert_close(fm.AB, dense, "AB")
    assert_close(fm.T.AB, dense.transpose(-2, -1), "T")
    assert_close(fm.transpose().AB, dense.transpose(-2, -1), "transpose()")


def test_BA_is_the_reverse_product(square):
    fm, _ = square
    assert_close(fm.BA, fm.B @ fm.A, "BA")


def test_matmul_with_tensors_on_either_side(rectangular):
    fm, dense = rectangular
    generator = torch.Generator().manual_seed(1)
    right = torch.randn(fm.rdim, 4, generator=generator, dtype=torch.float64)
    left = torch.randn(4, fm.ldim, generator=generator, dtype=torch.float64)
    vector_right = torch.randn(fm.rdim, generator=generator, dtype=torch.float64)
    vector_left = torch.randn(fm.ldim, generator=generator, dtype=torch.float64)
    assert_close((fm @ right).AB, dense @ right, "fm @ matrix")
    assert_close((left @ fm).AB, left @ dense, "matrix @ fm")
    assert_close(fm @ vector_right, dense @ vector_right, "fm @ vector")
    assert_close(vector_left @ fm, vector_left @ dense, "vector @ fm")
    batched = torch.randn(*LEADING, fm.rdim, 2, generator=generator, dtype=torch.float64)
    assert_close((fm @ batched).AB, dense @ batched, "fm @ batched matrix")
    assert (fm @ right).mdim <= min(fm.mdim, fm.rdim), "matmul should keep the inner width as small as possible"


def test_matmul_with_another_factored_matrix(rectangular):
    fm, dense = rectangular
    other, other_dense = make(fm.rdim, 2, 3, seed=5)
    assert_close((fm @ other).AB, dense @ other_dense, "fm @ fm")
    before, before_dense = make(3, 4, fm.ldim, seed=6)
    assert_close((before @ fm).AB, before_dense @ dense, "fm @ fm (left)")


def test_scalar_multiplication(rectangular):
    fm, dense = rectangular
    assert_close((fm * 2.5).AB, dense * 2.5, "fm * scalar")
    assert_close((3 * fm).AB, 3 * dense, "scalar * fm")
    assert_close((fm * torch.tensor(0.5, dtype=torch.float64)).AB, dense * 0.5, "fm * scalar tensor")


def test_svd_reconstructs_the_product_with_orthonormal_factors(rectangular):
    fm, dense = rectangular
    U, S, V = fm.svd()  # TransformerLens's convention: V is not transposed
    rank = min(fm.ldim, fm.mdim, fm.rdim)
    assert U.shape == (*LEADING, fm.ldim, rank) and S.shape == (*LEADING, rank) and V.shape == (*LEADING, fm.rdim, rank), (
        "svd() must return (U, S, V) with V [... rdim rank], as TransformerLens does"
    )
    assert_close(U @ torch.diag_embed(S) @ V.transpose(-2, -1), dense, "U diag(S) V^T")
    eye = torch.eye(rank, dtype=torch.float64).expand(*LEADING, rank, rank)
    assert_close(U.transpose(-2, -1) @ U, eye, "U^T U")
    assert_close(V.transpose(-2, -1) @ V, eye, "V^T V")
    assert_close(S, torch.linalg.svdvals(dense)[..., :rank], "singular values")
    assert bool((S[..., :-1] >= S[..., 1:]).all()), "singular values should be in descending order"
    assert fm.U is U and fm.S is S and fm.V is V, "the SVD should be computed once and kept"
    assert_close(fm.Vh, V.transpose(-2, -1), "Vh is V transposed, as torch.linalg.svd returns it")


def test_make_even_splits_the_spectrum_between_the_factors(rectangular):
    fm, dense = rectangular
    even = fm.make_even()
    assert_close(even.AB, dense, "make_even().AB")
    gram_A = even.A.transpose(-2, -1) @ even.A
    gram_B = even.B @ even.B.transpose(-2, -1)
    assert_close(gram_A, gram_B, "A^T A and B B^T of an even factorisation (both diag(S))")
    assert_close(torch.diagonal(gram_A, dim1=-2, dim2=-1), fm.S, "each factor carries sqrt(S)")


def test_pair_and_has_leading_dims():
    A, B = torch.randn(5, 3), torch.randn(2, 4, 3, 7)
    fm = FactoredMatrix(A, B)
    assert fm.has_leading_dims and not FactoredMatrix(A, torch.randn(3, 7)).has_leading_dims
    left, right = fm.pair
    assert left.shape == (2, 4, 5, 3) and torch.equal(left[1, 2], A) and right is fm.B, "pair is (A, B) broadcast"


def test_rows_and_columns_are_indexed_after_the_leading_axes(rectangular):
    fm, dense = rectangular
    assert_close(fm[0, 1, 2].AB, dense[0, 1, 2:3], "fm[0, 1, row]: an int row keeps its axis")
    assert_close(fm[0, 1, :, -1].AB, dense[0, 1, :, -1:], "fm[0, 1, :, -1]: last column")
    rows, cols = torch.tensor([2, 0]), [1]
    assert_close(fm[:, :, rows, cols].AB, dense[:, :, rows][..., cols], "fm[:, :, rows, cols]")
    assert fm[0, 1, 1:3].mdim == fm.mdim, "indexing rows must not materialise the product"
    assert_close(fm[:, :, None].AB, dense[:, :, None], "fm[:, :, None]: a new axis after the leading ones stays leading")


def test_norm_is_the_frobenius_norm(rectangular):
    fm, dense = rectangular
    assert_close(fm.norm(), torch.linalg.matrix_norm(dense), "norm")


def test_eigenvalues_are_those_of_the_product(square):
    fm, dense = square
    ours = fm.eigenvalues
    assert ours.shape == (*LEADING, min(fm.ldim, fm.mdim))
    expected = torch.linalg.eigvals(dense)
    padded = torch.cat([ours, torch.zeros(*LEADING, fm.ldim - ours.shape[-1], dtype=ours.dtype)], -1)
    distance = (padded[..., :, None] - expected[..., None, :]).abs()
    # Each eigenvalue of the dense product is matched by one of ours (zeros for the missing ones), and vice versa.
    assert distance.min(-1).values.max() < 1e-8 and distance.min(-2).values.max() < 1e-8, "eigenvalues differ from the dense product's"


def test_get_corner(rectangular):
    fm, dense = rectangular
    assert_close(fm.get_corner(2), dense[..., :2, :2], "get_corner(2)")
    assert_close(fm.get_corner(), dense[..., :3, :3], "get_corner()")


def test_indexing_the_leading_dimensions(rectangular):
    fm, dense = rectangular
    assert_close(fm[1].AB, dense[1], "fm[1]")
    assert_close(fm[1, 2].AB, dense[1, 2], "fm[1, 2]")
    assert_close(fm[-1, -1].AB, dense[-1, -1], "fm[-1, -1]")
    assert_close(fm[:, 1].AB, dense[:, 1], "fm[:, 1]")
    assert_close(fm[..., 2].AB, dense[:, 2], "fm[..., 2]")
    assert_close(fm[0, 1:].AB, dense[0, 1:], "fm[0, 1:]")
    assert_close(fm[None, 1].AB, dense[None, 1], "fm[None, 1]")


def test_collapse_removes_an_orthonormal_factor(rectangular):
    fm, dense = rectangular
    rank = min(fm.ldim, fm.mdim, fm.rdim)
    assert fm.collapse_l().shape == (*LEADING, rank, fm.rdim)
    assert fm.collapse_r().shape == (*LEADING, fm.ldim, rank)
    assert_close(fm.U @ fm.collapse_l(), dense, "U @ collapse_l()")
    assert_close(fm.collapse_r() @ fm.Vh, dense, "collapse_r() @ Vh")
    assert_close(fm.collapse_l(), fm.S[..., :, None] * fm.V.transpose(-2, -1), "collapse_l() is diag(S) V^T")


def test_unsqueeze_adds_a_leading_axis(rectangular):
    fm, dense = rectangular
    assert_close(fm.unsqueeze(0).AB, dense.unsqueeze(0), "unsqueeze(0)")
    assert_close(fm.unsqueeze(2).AB, dense.unsqueeze(2), "unsqueeze(2)")
    assert_close(fm.unsqueeze(-3).AB, dense.unsqueeze(-3), "unsqueeze(-3)")


def test_leading_dimensions_broadcast():
    A = torch.randn(3, 1, 4, 2, dtype=torch.float64)
    B = torch.randn(5, 2, 4, dtype=torch.float64)
    assert_close(FactoredMatrix(A, B).AB, A @ B, "broadcast factors")


def test_repr_is_readable():
    fm, _ = make(6, 3, 5)
    assert repr(fm) == "FactoredMatrix(shape=[2, 3, 6, 5], mdim=3, dtype=torch.float64)"


def test_half_precision_spectrum_is_computed_in_float32():
    fm, dense = make(6, 3, 6)
    half = FactoredMatrix(fm.A.bfloat16(), fm.B.bfloat16())
    assert half.S.dtype == torch.float32 and half.eigenvalues.dtype == torch.complex64
    torch.testing.assert_close(half.norm().double(), torch.linalg.matrix_norm(dense), rtol=2e-2, atol=0)


# ------------------------------------------------------------------ bad input
def test_factors_that_do_not_chain_name_both_shapes():
    with pytest.raises(ValueError, match=r"A has shape \(4, 3\) and B has shape \(2, 5\)"):
        FactoredMatrix(torch.randn(4, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"do not broadcast"):
        FactoredMatrix(torch.randn(2, 4, 3), torch.randn(3, 3, 5))
    with pytest.raises(TypeError, match="at least 2 dimensions"):
        FactoredMatrix(torch.randn(4), torch.randn(4, 2))


def test_incompatible_matmuls_name_both_shapes():
    fm = FactoredMatrix(torch.randn(4, 2), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\[4, 5\] @ \[3, 2\]"):
        fm @ torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"\[2, 3\] @ \[4, 5\]"):
        torch.randn(2, 3) @ fm
    with pytest.raises(ValueError, match=r"\[4, 5\] @ \[4, 5\]"):
        fm @ fm
    with pytest.raises(ValueError, match=r"\[4, 5\] @ \[3\]"):
        fm @ torch.randn(3)


def test_square_only_operations_refuse_rectangles():
    fm = FactoredMatrix(torch.randn(4, 2), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"square.*\[4, 5\]"):
        fm.BA
    with pytest.raises(ValueError, match=r"square.*\[4, 5\]"):
        fm.eigenvalues


def test_bad_indices_say_what_is_valid():
    fm = FactoredMatrix(torch.randn(2, 3, 4, 2), torch.randn(2, 3, 2, 4))
    with pytest.raises(IndexError, match=r"index 3 is out of range for leading dimension 1 of size 3"):
        fm[0, 3]
    with pytest.raises(IndexError, match=r"index -3 is out of range for leading dimension 0 of size 2"):
        fm[-3]
    with pytest.raises(IndexError, match="only 2 leading dimension"):
        fm[0, 0, 1, 1, 1]
    with pytest.raises(IndexError, match="after '...' no row or column index"):
        fm[..., 0, 0, 1]
    with pytest.raises(IndexError, match=r"row index 4 is out of range for 4 rows \(valid: -4..3\)"):
        fm[0, 0, 4]
    with pytest.raises(IndexError, match="would split the matrix axes"):
        fm.unsqueeze(3)
    with pytest.raises(ValueError, match="scalar"):
        fm * torch.ones(2)
