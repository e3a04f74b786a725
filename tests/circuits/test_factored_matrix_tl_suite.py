"""TransformerLens 3.9's own FactoredMatrix unit tests (tests/unit/factored_matrix/), run against our class.

The cases are TransformerLens's, transcribed; ``tl`` below is the import shim standing in for
``transformer_lens``. Where our class deliberately differs (listed in the FactoredMatrix docstring),
the shim says so in one place (``TL_ERROR``) or the TransformerLens test is replaced by one that
pins our documented behaviour, marked "DIFFERENCE".
"""

from __future__ import annotations

import types

import pytest
import torch
from einops import repeat
from torch import randn
from torch.testing import assert_close

from interp_transformer.circuits import FactoredMatrix

tl = types.SimpleNamespace(FactoredMatrix=FactoredMatrix)
# DIFFERENCE: TransformerLens asserts (AssertionError) or lets torch fail (RuntimeError); we raise ValueError naming the shapes.
TL_ERROR = {AssertionError: ValueError, RuntimeError: ValueError}


def raises(tl_error: type[Exception]):
    return pytest.raises(TL_ERROR.get(tl_error, tl_error))


# ---------------------------------------------------------------- test_constructor.py
def test_constructor():
    A, B = torch.randn(5, 3), torch.randn(3, 7)
    f = tl.FactoredMatrix(A, B)
    assert torch.equal(f.A, A) and torch.equal(f.B, B)
    assert (f.ldim, f.mdim, f.rdim) == (5, 3, 7)
    assert not f.has_leading_dims
    assert f.shape == (5, 7)


@pytest.mark.parametrize("A_shape", [(5, 3), (4, 5, 3)])
def test_constructor_leading_dims(A_shape):
    A, B = torch.ones(A_shape), torch.ones((2, 4, 3, 7))
    f = tl.FactoredMatrix(A, B)
    assert f.A.shape == (2, 4, 5, 3) and torch.equal(f.B, B)
    assert (f.ldim, f.mdim, f.rdim) == (5, 3, 7)
    assert f.has_leading_dims
    assert f.shape == (2, 4, 5, 7)


def test_constructor_broadcast_mismatch():
    with raises(RuntimeError):
        tl.FactoredMatrix(torch.ones((9, 5, 3)), torch.ones((2, 4, 3, 7)))


# ---------------------------------------------------------------- test_get_item.py
@pytest.fixture
def sample():
    return tl.FactoredMatrix(torch.rand(2, 2, 2, 2, 2), torch.rand(2, 2, 2, 2, 2))


@pytest.mark.parametrize("index", [0, (0, 1), (slice(None), 1), (slice(None), slice(None), 1)], ids=["int", "tuple", "slice", "slices"])
def test_getitem_leading(sample, index):
    result = sample[index]
    assert_close(result.A, sample.A[index])
    assert_close(result.B, sample.B[index])


def test_getitem_error(sample):
    with pytest.raises(IndexError):
        sample[(0, 1, 2)]


@pytest.mark.parametrize("index", [(0, 0, 0, 1), (0, 0, 0, 0, 1), (0, 0, 0, -1), (0, 0, 0, 0, -1), (0, 0, 0, -1, -1)])
def test_index_dimension_line_and_element(sample, index):
    assert_close(sample[index].AB.squeeze(), sample.AB[index])


def test_index_dimension_too_big(sample):
    with pytest.raises(Exception):
        sample[1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("A_idx, B_idx", [([0, 1], [0]), (torch.tensor([0, 1]), torch.tensor([0]))], ids=["lists", "tensors"])
def test_getitem_sequences(sample, A_idx, B_idx):
    result = sample[:, :, :, A_idx, B_idx]
    assert_close(result.A, sample.A[:, :, :, A_idx, :])
    assert_close(result.B, sample.B[:, :, :, :, B_idx])


def test_getitem_sequences_and_ints(sample):
    result = sample[:, :, :, [0, 1], 0]
    assert_close(result.A, sample.A[:, :, :, [0, 1], :])
    assert_close(result.B.squeeze(-1), sample.B[:, :, :, :, 0])  # ints keep their axis


# ---------------------------------------------------------------- test_multiply_by_factored_matrix.py
FM_CASES = [
    ((3, 3), (3, 3), (3, 3), (3, 3)), ((1, 1), (1, 1), (1, 1), (1, 1)), ((1, 2), (2, 1), (1, 6), (6, 1)),
    ((1, 1), (1, 1), (1, 2), (2, 5)), ((5, 2), (2, 1), (1, 1), (1, 1)), ((1, 2), (2, 3), (3, 2), (2, 4)),
    ((3, 2), (2, 1), (1, 3), (3, 2)), ((1, 2), (2, 5), (5, 3), (3, 1)), ((3, 4), (4, 5), (5, 6), (6, 7)),
    ((8, 6), (6, 5), (5, 7), (7, 3)), ((3, 4), (4, 4), (4, 5), (5, 5)), ((7, 6), (6, 3), (3, 7), (7, 8)),
]


def multiply_factored(a_left, a_right, b_left, b_right):
    factored_a, factored_b = tl.FactoredMatrix(a_left, a_right), tl.FactoredMatrix(b_left, b_right)
    product = factored_a @ factored_b
    assert torch.allclose(product.AB, (a_left @ a_right) @ (b_left @ b_right), atol=1e-5)
    assert product.ldim == factored_a.ldim
    assert product.mdim == min(factored_a.mdim, factored_a.rdim, factored_b.ldim, factored_b.mdim)
    assert product.rdim == factored_b.rdim
    return product


@pytest.mark.parametrize("shapes", FM_CASES)
@pytest.mark.parametrize("leading", ["none", "A", "B", "both"])
def test_multiply_two_factored_matrices(shapes, leading):
    a_left, a_right, b_left, b_right = (randn(*shape) for shape in shapes)
    if leading in ("A", "both"):
        pattern = dict(pattern="x y -> b1 b2 x y", b1=2, b2=9) if leading == "both" else dict(pattern="x y -> b x y", b=2)
        a_left, a_right = (repeat(x, **pattern) for x in (a_left, a_right))
    if leading in ("B", "both"):
        b = 9 if leading == "both" else 2
        b_left, b_right = (repeat(x, "x y -> b x y", b=b) for x in (b_left, b_right))
    product = multiply_factored(a_left, a_right, b_left, b_right)
    expected_leading = {"none": (), "A": (2,), "B": (2,), "both": (2, 9)}[leading]
    assert product.A.shape[:-2] == expected_leading and product.B.shape[:-2] == expected_leading


@pytest.mark.parametrize(
    "a, b, error",
    [
        (((2, 3, 4), (2, 4, 6)), ((4, 6, 7), (4, 7, 2)), RuntimeError),
        (((2, 9, 3, 4), (2, 9, 4, 6)), ((2, 6, 7), (2, 7, 2)), RuntimeError),
        (((3, 4), (4, 6)), ((5, 6), (6, 7)), AssertionError),
        (((3, 4), (4, 6)), ((2, 5, 6), (2, 6, 7)), AssertionError),
    ],
)
def test_matmul_dimension_mismatch(a, b, error):
    left, right = (tl.FactoredMatrix(randn(*x), randn(*y)) for x, y in (a, b))
    with raises(error):
        left @ right


# ---------------------------------------------------------------- test_multiply_by_matrix.py
@pytest.mark.parametrize("a, b, matrix", [((2, 3), (3, 4), (4, 5)), ((2, 6), (6, 4), (4, 5)), ((2, 4), (4, 4), (4, 5))])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("leading", ["none", "factored", "matrix", "both"])
def test_multiply_by_matrix(a, b, matrix, side, leading):
    if side == "right":  # TransformerLens's right-multiplication cases: (matrix, a, b) shaped for matrix @ fm
        a, b, matrix = {(2, 3): ((3, 4), (4, 6), (6, 3)), (2, 6): ((6, 4), (4, 2), (2, 6)), (2, 4): ((2, 4), (4, 2), (2, 2))}[a]
    a, b, matrix = randn(*a), randn(*b), randn(*matrix)
    if leading in ("factored", "both"):
        a, b = repeat(a, "x y -> b x y", b=2), repeat(b, "x y -> b x y", b=2)
    if leading == "both":
        matrix = repeat(matrix, "x y -> b x y", b=2)
    if leading == "matrix":
        matrix = repeat(matrix, "x y -> b1 b2 x y", b1=2, b2=12)
    fm = tl.FactoredMatrix(a, b)
    product = fm @ matrix if side == "left" else matrix @ fm
    assert_close(product.AB, (a @ b) @ matrix if side == "left" else matrix @ (a @ b))
    if side == "left":
        assert (product.ldim, product.mdim, product.rdim) == (fm.ldim, min(fm.mdim, matrix.shape[-2]), matrix.shape[-1])
    else:
        assert (product.ldim, product.mdim, product.rdim) == (matrix.shape[-2], min(fm.mdim, matrix.shape[-1]), fm.rdim)
    expected_leading = {"none": (), "factored": (2,), "matrix": (2, 12), "both": (2,)}[leading]
    assert product.A.shape[:-2] == expected_leading and product.B.shape[:-2] == expected_leading


# ---------------------------------------------------------------- test_multiply_by_scalar.py
@pytest.mark.parametrize(
    "scalar, error",
    [(torch.rand(1), None), (0.37, None), (7, None), (torch.rand(2, 2), AssertionError), (torch.rand(2), AssertionError)],
)
@pytest.mark.parametrize("leading_dim", [False, True])
@pytest.mark.parametrize("multiply_from_left", [False, True])
def test_multiply_by_scalar(scalar, error, leading_dim, multiply_from_left):
    a, b = (torch.rand(6, 2, 3), torch.rand(6, 3, 4)) if leading_dim else (torch.rand(2, 3), torch.rand(3, 4))
    fm = tl.FactoredMatrix(a, b)
    if error:
        with raises(error):
            fm * scalar if multiply_from_left else scalar * fm
        return
    assert_close((fm * scalar if multiply_from_left else scalar * fm).AB, (a @ b) * scalar)


# ---------------------------------------------------------------- test_multiply_by_vector.py (and test_matmul_tensor.py)
@pytest.mark.parametrize("leading", [(), (6,)])
def test_matmul_by_vector(leading):
    a, b = torch.rand(*leading, 2, 3), torch.rand(*leading, 3, 4)
    fm = tl.FactoredMatrix(a, b)
    vector = torch.rand(4)
    assert_close(fm @ vector, (a @ b) @ vector)
    left_vector = torch.rand(2)  # skipped in TransformerLens (its __rmatmul__ squeezed the wrong axis); passes here
    assert_close(left_vector @ fm, left_vector @ (a @ b))


# ---------------------------------------------------------------- test_properties.py
PROPERTY_SHAPES = [((3, 2), (2, 3)), ((4, 5), (5, 4)), ((6, 7), (7, 6)), ((6, 7), (7, 3))]


@pytest.fixture(scope="module")
def matrices():
    pairs = [(randn(*x), randn(*y)) for x, y in PROPERTY_SHAPES]
    return [(tl.FactoredMatrix(a, b), a, b) for a, b in pairs]


def test_AB_BA_T_ndim_pair_norm_corner(matrices):
    for fm, a, b in matrices:
        assert torch.allclose(fm.AB, a @ b, atol=1e-5)
        if a.shape[-2] == b.shape[-1]:
            assert torch.allclose(fm.BA, b @ a, atol=1e-5)
        else:
            with raises(AssertionError):
                fm.BA
        assert torch.allclose(fm.T.A, fm.B.transpose(-2, -1)) and torch.allclose(fm.T.B, fm.A.transpose(-2, -1))
        assert fm.ndim == max(a.ndim, b.ndim) == len(fm.shape)
        assert torch.allclose(fm.pair[0], a) and torch.allclose(fm.pair[1], b)
        assert torch.allclose(fm.norm(), fm.AB.norm(), atol=1e-5)
        assert torch.allclose(fm.get_corner(3), (fm.A[..., :3, :] @ fm.B[..., :, :3])[..., :3, :3])


@pytest.mark.parametrize("leading", [(), (1,)])
def test_svd(leading):
    for x, y in PROPERTY_SHAPES + [((8, 9), (9, 8))]:
        fm = tl.FactoredMatrix(randn(*leading, *x), randn(*leading, *y))
        U, S, Vh = fm.svd()  # TransformerLens's name for the third value; it is V (not transposed) in both libraries
        assert torch.allclose(fm.AB, U @ torch.diag_embed(S) @ Vh.mT, atol=1e-5)
        assert torch.allclose(U.mT @ U, torch.eye(U.shape[-1]), atol=1e-5)
        assert torch.allclose(Vh.mT @ Vh, torch.eye(Vh.shape[-1]), atol=1e-5)
        assert fm.svd()[0] is U and fm.svd()[2] is Vh, "svd() is cached per instance"


def test_eigenvalues(matrices):
    for fm, _, _ in matrices:
        if fm.ldim != fm.rdim:
            with raises(AssertionError):
                fm.eigenvalues
            continue
        expected = torch.linalg.eig(fm.B @ fm.A).eigenvalues
        # DIFFERENCE: we return min(ldim, mdim) eigenvalues; TransformerLens returns BA's mdim, the extra ones zero.
        expected_magnitudes = expected.abs().sort(descending=True).values[: min(fm.ldim, fm.mdim)]
        assert torch.allclose(fm.eigenvalues.abs().sort(descending=True).values, expected_magnitudes, atol=1e-4)


def test_eigenvalues_bfloat16():
    for x, y in [((3, 2), (2, 3)), ((10, 4), (4, 10))]:
        fm = tl.FactoredMatrix(randn(*x).to(torch.bfloat16), randn(*y).to(torch.bfloat16))
        eigenvalues = fm.eigenvalues
        assert eigenvalues.dtype == torch.complex64
        expected = torch.linalg.eig(fm.BA.to(torch.float32)).eigenvalues
        assert torch.allclose(eigenvalues.abs().sort().values, expected.abs().sort().values, atol=1e-2, rtol=1e-2)


def test_collapse_l_and_r(matrices):
    for fm, _, _ in matrices:
        assert torch.allclose(fm.collapse_l(), fm.S[..., :, None] * fm.V.transpose(-2, -1))
        assert torch.allclose(fm.collapse_r(), fm.U * fm.S[..., None, :])


def test_V_and_Vh(matrices):
    # DIFFERENCE: TransformerLens's Vh is a deprecated alias returning V; ours is V transposed, as its name says.
    for fm, _, _ in matrices:
        assert torch.equal(fm.Vh, fm.V.transpose(-2, -1))


def test_unsqueeze():
    fm = tl.FactoredMatrix(randn(1, 8, 9), randn(1, 9, 8))
    result = tl.FactoredMatrix(fm.A.unsqueeze(0), fm.B.unsqueeze(0))
    assert torch.allclose(result.A, fm.A.unsqueeze(0)) and torch.allclose(result.B, fm.B.unsqueeze(0))
    assert torch.allclose(fm.unsqueeze(0).AB, fm.AB.unsqueeze(0))


def test_make_even():
    fm = tl.FactoredMatrix(randn(6, 7), randn(7, 3))
    even = fm.make_even()
    assert torch.allclose(even.AB, fm.AB, atol=1e-5)
    assert torch.allclose(even.A, fm.U * fm.S.sqrt()[..., None, :]) and torch.allclose(even.B, fm.S.sqrt()[..., :, None] * fm.V.mT)
