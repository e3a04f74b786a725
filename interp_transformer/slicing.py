"""Position and batch slices in TransformerLens's ``Slice`` vocabulary, applied along one axis.

A slice input is one of:

- ``None``: keep everything;
- an ``int``: keep one index and drop the axis (``-1`` is the last position);
- a ``(start, stop[, step])`` tuple or a ``slice``: keep a range;
- a list or 1-D integer tensor of indices: keep those, in that order.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch
from torch import Tensor

SliceInput = Union[None, int, tuple, slice, Sequence[int], Tensor]


def to_index(slice_input: SliceInput) -> int | slice | Tensor:
    """The indexing object for one axis; raises TypeError for anything else."""
    if slice_input is None:
        return slice(None)
    if isinstance(slice_input, bool):
        raise TypeError(f"a slice must be None, an int, a (start, stop[, step]) tuple, a slice or a list of ints, got {slice_input!r}")
    if isinstance(slice_input, int):
        return slice_input
    if isinstance(slice_input, slice):
        return slice_input
    if isinstance(slice_input, tuple):
        if not 1 <= len(slice_input) <= 3 or not all(v is None or isinstance(v, int) for v in slice_input):
            raise TypeError(f"a tuple slice must be (start, stop[, step]) of ints or None, got {slice_input!r}")
        return slice(*slice_input)
    if isinstance(slice_input, Tensor):
        if slice_input.is_floating_point() or slice_input.dtype == torch.bool:
            raise TypeError(f"a tensor slice must hold integer indices, got dtype {slice_input.dtype}")
        if slice_input.ndim == 0:
            return int(slice_input)
        if slice_input.ndim != 1:
            raise TypeError(f"a tensor slice must be 1-D, got shape {tuple(slice_input.shape)}")
        return slice_input.long()
    if isinstance(slice_input, (list, range)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in slice_input):
            raise TypeError(f"a list slice must hold ints, got {list(slice_input)!r}")
        return torch.tensor(list(slice_input), dtype=torch.long)
    raise TypeError(
        f"a slice must be None, an int, a (start, stop[, step]) tuple, a slice or a list of ints, "
        f"got {type(slice_input).__name__}"
    )


def apply_slice(tensor: Tensor, slice_input: SliceInput, dim: int) -> Tensor:
    """``tensor`` indexed along ``dim`` (an int slice drops the axis)."""
    index = to_index(slice_input)
    if isinstance(index, slice) and index == slice(None):
        return tensor
    dim = dim % tensor.ndim
    size = tensor.shape[dim]
    if isinstance(index, Tensor):
        if index.numel() and not (-size <= int(index.min()) and int(index.max()) < size):
            raise IndexError(f"indices {index.tolist()} are out of range for an axis of size {size}")
        return tensor.index_select(dim, index.to(tensor.device) % max(size, 1))
    if isinstance(index, int) and not -size <= index < size:
        raise IndexError(f"index {index} is out of range for an axis of size {size}")
    return tensor[(slice(None),) * dim + (index,)]


def is_trivial(slice_input: SliceInput) -> bool:
    index = to_index(slice_input)
    return isinstance(index, slice) and index == slice(None)


def keeps_axis(slice_input: SliceInput) -> bool:
    """False for an int slice, which removes the axis it indexes."""
    return not isinstance(to_index(slice_input), int)


def to_json(slice_input: SliceInput) -> Any:
    """A JSON value that ``from_json`` turns back into the same slice."""
    index = to_index(slice_input)
    if isinstance(index, int):
        return index
    if isinstance(index, slice):
        return {"start": index.start, "stop": index.stop, "step": index.step}
    return [int(i) for i in index]


def from_json(value: Any) -> SliceInput:
    if isinstance(value, dict):
        return slice(value["start"], value["stop"], value["step"])
    return value
