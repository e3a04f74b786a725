"""Patching results: a tensor that knows its axis names and labels, to a tidy DataFrame or a heatmap in one call.

``PatchingResult`` is a ``torch.Tensor`` (TransformerLens code that indexes, plots or compares the
result keeps working) with ``axes`` (dimension words: ``layer``, ``pos``, ``head_index``,
``query_pos``, ``key_pos``, ``batch`` for per-prompt metrics, ``activation`` for the stacked
"every" experiments, ``sender`` for path patching) and ``labels`` (tick text per axis: the prompt's
tokens for position axes, names for ``activation`` and ``sender``). Any torch operation on it
returns a plain tensor, so stale axis names never travel with a reshaped result.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd
import torch
from torch import Tensor

if TYPE_CHECKING:
    from interp_transformer.vis.heatmap import HeatmapView

CATEGORICAL_AXES = ("activation", "sender")
TOKEN_COLUMNS = {"pos": "token", "query_pos": "query_token", "key_pos": "key_token"}


class PatchingResult(Tensor):
    """Metric values of a patching experiment with named axes. Save with ``torch.save(result, path)``
    (loading needs ``weights_only=False``) or save ``result.values``."""

    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    value_name: str
    title: str

    # Operations return plain tensors, as for nn.Parameter: a sum or slice has other axes.
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(
        cls,
        values: Tensor,
        axes: Sequence[str],
        labels: dict[str, Sequence[str]] | None = None,
        value_name: str = "metric",
        title: str = "",
    ) -> "PatchingResult":
        axes = tuple(axes)
        if len(axes) != values.ndim:
            raise ValueError(f"{len(axes)} axis names {axes} for a tensor of shape {tuple(values.shape)}")
        labels = {axis: list(text) for axis, text in (labels or {}).items() if axis in axes}
        for axis, text in labels.items():
            size = values.shape[axes.index(axis)]
            if len(text) != size:
                raise ValueError(f"axis {axis!r} has {size} entries but {len(text)} labels")
        result = Tensor._make_subclass(cls, values.detach(), False)
        result.axes, result.labels, result.value_name, result.title = axes, labels, value_name, title
        return result

    @property
    def values(self) -> Tensor:
        """The plain tensor (shares memory)."""
        return self.as_subclass(Tensor)

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        return f"PatchingResult(axes={self.axes}, value_name={self.value_name!r})\n{self.values!r}"

    def __reduce_ex__(self, protocol: int) -> tuple:
        return (_rebuild, (self.values, self.axes, self.labels, self.value_name, self.title))

    def __deepcopy__(self, memo: dict) -> "PatchingResult":
        return PatchingResult(self.values.clone(), self.axes, self.labels, self.value_name, self.title)

    # ------------------------------------------------------------------ tables
    def to_dataframe(self) -> pd.DataFrame:
        """One row per cell: a column per axis (index, or name for ``activation``/``sender``), a token column
        next to each position axis, and ``value``."""
        values = self.values.detach().float().cpu()
        columns: dict[str, list] = {}
        grid = list(itertools.product(*(range(size) for size in values.shape)))
        for axis_number, axis in enumerate(self.axes):
            indices = [cell[axis_number] for cell in grid]
            text = self.labels.get(axis)
            if axis in CATEGORICAL_AXES and text is not None:
                columns[axis] = [text[i] for i in indices]
                continue
            columns[axis] = indices
            if axis in TOKEN_COLUMNS and text is not None:
                columns[TOKEN_COLUMNS[axis]] = [text[i] for i in indices]
        columns["value"] = values.flatten().tolist()
        return pd.DataFrame(columns)

    # ----------------------------------------------------------------- picture
    def heatmap(self, title: str | None = None, **options: Any) -> "HeatmapView":
        """A heatmap (``vis.heatmap``): the last position axis (else the last axis) runs along x with token
        labels; every other axis is folded into the rows. ``.save("file.html")`` writes it; notebooks show it."""
        from interp_transformer.vis.heatmap import heatmap

        values, axes = self.values.detach().float().cpu(), self.axes
        if values.ndim == 0:
            raise ValueError("a scalar result has nothing to draw; print it instead")
        if values.ndim == 1:  # one unnamed row
            values, axes = values[None], ("", *axes)
        column_axis = max((i for i, axis in enumerate(axes) if axis in TOKEN_COLUMNS), default=len(axes) - 1)
        row_axes = [i for i in range(len(axes)) if i != column_axis]
        matrix = values.permute(*row_axes, column_axis).reshape(-1, values.shape[column_axis])
        row_labels = [
            ", ".join(self._tick(axes[i], index) for i, index in zip(row_axes, cell) if axes[i])
            for cell in itertools.product(*(range(values.shape[i]) for i in row_axes))
        ]
        return heatmap(
            matrix,
            x_labels=[self._tick(axes[column_axis], i) for i in range(values.shape[column_axis])],
            y_labels=row_labels,
            x_title=axes[column_axis],
            y_title=", ".join(axes[i] for i in row_axes if axes[i]),
            title=title if title is not None else (self.title or None),
            value_name=self.value_name,
            **options,
        )

    def _tick(self, axis: str, index: int) -> str:
        text = self.labels.get(axis)
        return str(index) if text is None else text[index]


def _rebuild(values: Tensor, axes: tuple, labels: dict, value_name: str, title: str) -> PatchingResult:
    return PatchingResult(values, axes, labels, value_name, title)


def stack_results(
    results: Sequence[Tensor],
    names: Sequence[str],
    axes: Sequence[str],
    labels: dict[str, Sequence[str]] | None = None,
    value_name: str = "metric",
    title: str = "",
) -> PatchingResult:
    """Stack same-shaped results along a new leading ``activation`` axis labelled by ``names``."""
    values = torch.stack([torch.as_tensor(r).as_subclass(Tensor) for r in results])
    return PatchingResult(values, ("activation", *axes), {**(labels or {}), "activation": list(names)}, value_name, title)
