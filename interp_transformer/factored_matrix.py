"""FactoredMatrix: a product ``A @ B`` kept as its two factors, analysed without forming it.

Axes: ``ldim`` rows of the product, ``mdim`` the inner (hidden) width shared by the factors,
``rdim`` columns of the product, ``rank`` = ``min(ldim, mdim, rdim)``; any axes before the last
two are leading axes (``layer head_index`` for ``model.QK``) and broadcast like torch's matmul.

The singular value decomposition comes from QR factorisations of the two factors and the SVD of
the small ``[rank rank]``-sized middle, so a ``[d_vocab d_vocab]`` circuit of rank ``d_head``
costs ``O(d_vocab d_head^2)``, never ``O(d_vocab^2)``.

**``svd()`` follows TransformerLens: it returns ``(U, S, V)`` with ``V`` NOT transposed**
(``[... rdim rank]``, ``U @ diag(S) @ V.mT == AB``), unlike ``torch.linalg.svd``, which returns
``Vh``. The ``V`` and ``Vh`` properties are both available and both mean what they say:
``Vh == V.mT``, as ``torch.linalg.svd`` returns it.

Differences from TransformerLens 3.9's ``FactoredMatrix`` (its unit tests run against this
class through a shim in ``tests/circuits/test_factored_matrix_tl_suite.py``):

- ``Vh`` is the conjugate transpose of ``V`` (``[... rank rdim]``). TransformerLens's ``Vh`` is a
  deprecated alias that returns ``V`` itself.
- Bad input raises ``ValueError``/``TypeError``/``IndexError`` naming the shapes, where
  TransformerLens raises ``AssertionError`` or ``RuntimeError``.
- ``eigenvalues`` returns ``min(ldim, mdim)`` values (from the smaller of ``AB`` and ``BA``);
  TransformerLens always uses ``BA`` and returns ``mdim`` values, the extra ones zero.
- Factors must be torch tensors; TransformerLens also multiplies tensor-like duck types.
"""

from __future__ import annotations

from typing import Union

import torch
from jaxtyping import Complex, Float
from torch import Tensor

Index = Union[int, slice, None, type(Ellipsis), Tensor, tuple]


class FactoredMatrix:
    """The matrix ``A @ B`` with ``A [... ldim mdim]`` and ``B [... mdim rdim]``; leading axes broadcast."""

    def __init__(self, A: Float[Tensor, "... ldim mdim"], B: Float[Tensor, "... mdim rdim"]) -> None:
        for name, factor in (("A", A), ("B", B)):
            if not isinstance(factor, Tensor) or factor.ndim < 2:
                what = f"shape {tuple(factor.shape)}" if isinstance(factor, Tensor) else type(factor).__name__
                raise TypeError(f"factor {name} must be a tensor with at least 2 dimensions, got {what}")
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(
                f"factors do not chain: A has shape {tuple(A.shape)} and B has shape {tuple(B.shape)}; "
                "A's last dimension must equal B's second-to-last"
            )
        try:
            leading = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"the leading dimensions of A {tuple(A.shape)} and B {tuple(B.shape)} do not broadcast"
            ) from None
        self._A = A.broadcast_to(leading + A.shape[-2:])
        self._B = B.broadcast_to(leading + B.shape[-2:])
        self._svd: tuple[Tensor, Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ shape
    @property
    def A(self) -> Float[Tensor, "... ldim mdim"]:
        return self._A

    @property
    def B(self) -> Float[Tensor, "... mdim rdim"]:
        return self._B

    @property
    def ldim(self) -> int:
        return self._A.shape[-2]

    @property
    def mdim(self) -> int:
        return self._A.shape[-1]

    @property
    def rdim(self) -> int:
        return self._B.shape[-1]

    @property
    def shape(self) -> torch.Size:
        return self._A.shape[:-1] + self._B.shape[-1:]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def leading_shape(self) -> torch.Size:
        return self._A.shape[:-2]

    @property
    def has_leading_dims(self) -> bool:
        """True when there are axes before the matrix axes (``model.QK`` has two: layer, head_index)."""
        return len(self.leading_shape) > 0

    @property
    def pair(self) -> tuple[Float[Tensor, "... ldim mdim"], Float[Tensor, "... mdim rdim"]]:
        """``(A, B)``, broadcast to the common leading shape."""
        return self._A, self._B

    @property
    def dtype(self) -> torch.dtype:
        return torch.promote_types(self._A.dtype, self._B.dtype)

    @property
    def device(self) -> torch.device:
        return self._A.device

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={list(self.shape)}, mdim={self.mdim}, dtype={self.dtype})"

    # ----------------------------------------------------------- the product
    @property
    def AB(self) -> Float[Tensor, "... ldim rdim"]:
        """The dense product, ``ldim * rdim`` numbers per leading index: everything else here avoids forming it."""
        return self._A @ self._B

    @property
    def BA(self) -> Float[Tensor, "... mdim mdim"]:
        """The reverse product ``B @ A``; defined only for a square matrix (``ldim == rdim``)."""
        if self.ldim != self.rdim:
            raise ValueError(f"BA needs a square matrix (ldim == rdim), but this FactoredMatrix has shape {list(self.shape)}")
        return self._B @ self._A

    @property
    def T(self) -> "FactoredMatrix":
        return self.transpose()

    def transpose(self) -> "FactoredMatrix":
        """``(AB)^T = B^T A^T``, still factored."""
        return FactoredMatrix(self._B.transpose(-2, -1), self._A.transpose(-2, -1))

    def get_corner(self, k: int = 3) -> Float[Tensor, "... k k"]:
        """The dense top-left ``k x k`` block of every matrix, computed from ``k`` rows and columns only."""
        if k < 1:
            raise ValueError(f"k must be a positive int, got {k}")
        return self._A[..., :k, :] @ self._B[..., :, :k]

    # ----------------------------------------------------------------- matmul
    def __matmul__(self, other: Union[Tensor, "FactoredMatrix"]) -> Union["FactoredMatrix", Tensor]:
        """``self @ other``: a FactoredMatrix for a matrix or FactoredMatrix, a tensor ``[... ldim]`` for a vector."""
        if isinstance(other, FactoredMatrix):
            self._check_chain(self.shape, other.shape)
            return (self @ other.A) @ other.B
        if not isinstance(other, Tensor):
            return NotImplemented
        self._check_chain(self.shape, other.shape)
        if other.ndim == 1:
            return (self._A @ (self._B @ other.unsqueeze(-1))).squeeze(-1)
        # Keep the inner width as small as possible: fold `other` into B, or collapse to AB when that is narrower.
        if self.rdim > self.mdim:
            return FactoredMatrix(self._A, self._B @ other)
        return FactoredMatrix(self.AB, other)

    def __rmatmul__(self, other: Tensor) -> Union["FactoredMatrix", Tensor]:
        """``other @ self``: a FactoredMatrix for a matrix, a tensor ``[... rdim]`` for a vector."""
        if not isinstance(other, Tensor):
            return NotImplemented
        self._check_chain(other.shape, self.shape)
        if other.ndim == 1:
            return ((other.unsqueeze(-2) @ self._A) @ self._B).squeeze(-2)
        if self.ldim > self.mdim:
            return FactoredMatrix(other @ self._A, self._B)
        return FactoredMatrix(other, self.AB)

    @staticmethod
    def _check_chain(left: torch.Size, right: torch.Size) -> None:
        inner_right = right[-2] if len(right) > 1 else (right[-1] if right else None)
        if len(left) == 0 or len(right) == 0 or left[-1] != inner_right:
            raise ValueError(
                f"cannot multiply shapes {list(left)} @ {list(right)}: the left operand's last dimension "
                "must equal the right operand's second-to-last (or only) dimension"
            )
        if len(left) > 1 and len(right) > 1:
            try:
                torch.broadcast_shapes(left[:-2], right[:-2])
            except RuntimeError:
                raise ValueError(
                    f"cannot multiply shapes {list(left)} @ {list(right)}: their leading dimensions "
                    f"{list(left[:-2])} and {list(right[:-2])} do not broadcast"
                ) from None

    def __mul__(self, scalar: Union[int, float, Tensor]) -> "FactoredMatrix":
        """Multiplication by a scalar (for matrix products use ``@``)."""
        if isinstance(scalar, Tensor) and scalar.numel() != 1:
            raise ValueError(f"* takes a scalar, got a tensor of shape {tuple(scalar.shape)}; use @ for matrix products")
        if not isinstance(scalar, (int, float, Tensor)):
            return NotImplemented
        return FactoredMatrix(self._A * scalar, self._B)

    __rmul__ = __mul__

    # --------------------------------------------------------------- spectrum
    def svd(self) -> tuple[Float[Tensor, "... ldim rank"], Float[Tensor, "... rank"], Float[Tensor, "... rdim rank"]]:
        """``(U, S, V)`` with ``U @ diag(S) @ V.mT == AB``, singular values descending (TransformerLens's convention).

        ``V`` is NOT transposed (``torch.linalg.svd`` returns ``Vh = V.mT``; use the ``Vh`` property for that).
        From ``A = Q_A R_A`` and ``B^T = Q_B R_B`` the product is ``Q_A (R_A R_B^T) Q_B^T``, so the SVD of
        the small middle ``R_A R_B^T`` gives the SVD of the whole. Computed once and kept.
        """
        if self._svd is None:
            Q_A, R_A = torch.linalg.qr(self._float(self._A))
            Q_B, R_B = torch.linalg.qr(self._float(self._B).transpose(-2, -1))
            U_mid, S, Vh_mid = torch.linalg.svd(R_A @ R_B.transpose(-2, -1), full_matrices=False)
            self._svd = (Q_A @ U_mid, S, Q_B @ Vh_mid.transpose(-2, -1))
        return self._svd

    @property
    def U(self) -> Float[Tensor, "... ldim rank"]:
        return self.svd()[0]

    @property
    def S(self) -> Float[Tensor, "... rank"]:
        return self.svd()[1]

    @property
    def V(self) -> Float[Tensor, "... rdim rank"]:
        """Right singular vectors as columns: ``AB == U @ diag(S) @ V.mT`` (the third value of ``svd()``)."""
        return self.svd()[2]

    @property
    def Vh(self) -> Float[Tensor, "... rank rdim"]:
        """``V`` transposed, as ``torch.linalg.svd`` returns it (TransformerLens's ``Vh`` is ``V`` itself)."""
        return self.V.transpose(-2, -1)

    def make_even(self) -> "FactoredMatrix":
        """The same matrix factored as ``(U sqrt(S), sqrt(S) Vh)``: both factors carry half the spectrum."""
        root = self.S.sqrt()
        return FactoredMatrix(self.U * root[..., None, :], root[..., :, None] * self.Vh)

    def norm(self) -> Float[Tensor, "..."]:
        """Frobenius norm of each matrix: ``sqrt(sum S^2)``."""
        return self.S.pow(2).sum(-1).sqrt()

    @property
    def eigenvalues(self) -> Complex[Tensor, "... eig"]:
        """Eigenvalues of the square matrix ``AB``, from the smaller of ``AB`` and ``BA``.

        ``AB`` and ``BA`` share their nonzero eigenvalues (``BAv = kv`` gives ``AB(Av) = k(Av)``), so this
        returns ``min(ldim, mdim)`` values; the other ``ldim - mdim`` eigenvalues of ``AB`` are zero.
        """
        if self.ldim != self.rdim:
            raise ValueError(f"eigenvalues need a square matrix (ldim == rdim), but this FactoredMatrix has shape {list(self.shape)}")
        small = self.BA if self.mdim <= self.ldim else self.AB
        return torch.linalg.eigvals(self._float(small))

    def collapse_l(self) -> Float[Tensor, "... rank rdim"]:
        """``diag(S) @ Vh``: the matrix with its left orthonormal factor ``U`` removed (``U @ collapse_l() == AB``)."""
        return self.S[..., :, None] * self.Vh

    def collapse_r(self) -> Float[Tensor, "... ldim rank"]:
        """``U @ diag(S)``: the matrix with its right orthonormal factor removed (``collapse_r() @ Vh == AB``)."""
        return self.U * self.S[..., None, :]

    @staticmethod
    def _float(x: Tensor) -> Tensor:
        # QR, SVD and eig have no float16/bfloat16 kernels.
        return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x

    # --------------------------------------------------------- leading axes
    def __getitem__(self, index: Index) -> "FactoredMatrix":
        """Index the leading axes (``model.QK[layer, head]``), then, as in TransformerLens, rows and columns.

        Indices past the leading axes select rows of the product (from ``A``), then columns (from
        ``B``); an int there keeps its axis (length 1), so the result is always a FactoredMatrix.
        ``...`` stands for the leading axes not indexed explicitly and is not followed by row or
        column indices (write them out: ``fm[:, :, rows]``).
        """
        items = index if isinstance(index, tuple) else (index,)
        n_leading = len(self.leading_shape)
        used = sum(1 for item in items if item is not None and item is not Ellipsis)
        if sum(1 for item in items if item is Ellipsis) > 1:
            raise IndexError(f"index {index!r} has more than one '...'")
        limit = n_leading if Ellipsis in items else n_leading + 2
        if used > limit:
            raise IndexError(
                f"index {index!r} has {used} entries but this FactoredMatrix of shape {list(self.shape)} has only "
                f"{n_leading} leading dimension(s)"
                + (" (after '...' no row or column index may follow)" if Ellipsis in items else " plus its rows and columns")
            )
        if Ellipsis in items:  # "..." stands for the leading axes not indexed explicitly, never the matrix axes
            at = items.index(Ellipsis)
            items = items[:at] + (slice(None),) * (n_leading - used) + items[at + 1 :]
        split, seen = len(items), 0
        for position, item in enumerate(items):  # leading entries (and new axes) end after n_leading real indices
            if seen == n_leading and item is not None:
                split = position
                break
            seen += item is not None
        leading, matrix = items[:split], items[split:]
        if any(item is None for item in matrix):
            raise IndexError(f"index {index!r} puts None (a new axis) among the row/column indices; new axes go before them")
        self._check_int_indices(leading)
        A, B = self._A[leading + (slice(None), slice(None))], self._B[leading + (slice(None), slice(None))]
        if len(matrix) >= 1:
            A = A[..., self._keep_axis(matrix[0], self.ldim, "row"), :]
        if len(matrix) == 2:
            B = B[..., self._keep_axis(matrix[1], self.rdim, "column")]
        return FactoredMatrix(A, B)

    @staticmethod
    def _keep_axis(item: object, size: int, what: str) -> object:
        """A row/column index that keeps its axis: an int ``i`` becomes the slice ``i:i+1``."""
        if isinstance(item, bool) or not isinstance(item, int):
            return item
        if not -size <= item < size:
            raise IndexError(f"{what} index {item} is out of range for {size} {what}s (valid: -{size}..{size - 1})")
        return slice(item, item + 1 if item != -1 else None)

    def _check_int_indices(self, items: tuple) -> None:
        axis = 0
        for item in items:
            if item is None:
                continue
            if isinstance(item, int) and not -self.shape[axis] <= item < self.shape[axis]:
                raise IndexError(
                    f"index {item} is out of range for leading dimension {axis} of size {self.shape[axis]} "
                    f"(FactoredMatrix shape {list(self.shape)}); valid: -{self.shape[axis]}..{self.shape[axis] - 1}"
                )
            axis += 1

    def unsqueeze(self, dim: int) -> "FactoredMatrix":
        """Insert a leading axis of size 1 at ``dim`` (counted in the full shape; must land before the matrix axes)."""
        n_leading = len(self.leading_shape)
        position = dim if dim >= 0 else dim + self.ndim + 1
        if not 0 <= position <= n_leading:
            raise IndexError(
                f"unsqueeze({dim}) on shape {list(self.shape)} would split the matrix axes; "
                f"use a position in 0..{n_leading} (or {-self.ndim - 1}..{n_leading - self.ndim - 1})"
            )
        return FactoredMatrix(self._A.unsqueeze(position), self._B.unsqueeze(position))
