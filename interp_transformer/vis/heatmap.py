"""Heatmaps of ``[layer pos]``, ``[layer head_index]`` and ``[pos pos]`` results, drawn with plotly.

Patching sweeps, head-detector scores, composition scores, logit-lens tables: each function
labels its axes in dimension words and its ticks with tokens where there are tokens. Row 0 is
at the top. Values with both signs get a diverging scale centred on 0, others a sequential one.
The figure is interactive (zoom, hover for the exact value) in notebooks and saved HTML, and
``save_png`` exports it offline (see ``png.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from interp_transformer.vis.bundle import PLOTLY
from interp_transformer.vis.escaping import escape_json_for_script, round_sig
from interp_transformer.vis.labels import LABEL_CHARS, visible_label
from interp_transformer.vis.plotly_text import plotly_label
from interp_transformer.vis.view import DEFAULT_MAX_BYTES, View

if TYPE_CHECKING:
    import plotly.graph_objects as go

TICK_LABEL_CHARS = LABEL_CHARS
HOVER_LABEL_CELLS = 20_000
DIVERGING = "RdBu"
SEQUENTIAL = "Blues"
# plotly.js 3 adds a "Share chart" button that uploads the figure to plotly's cloud: off, with no server to send to.
PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "showSendToCloud": False,
    "plotlyServerURL": "",
    "modeBarButtonsToRemove": ["sendChartToCloud"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


class HeatmapView(View):
    """A plotly heatmap. ``figure`` is the live ``plotly.graph_objects.Figure``: restyle it before saving."""

    bundles = (PLOTLY,)

    def __init__(self, figure: go.Figure, kind: str = "heatmap", title: str | None = None) -> None:
        super().__init__(kind, None, title=title)
        self.figure = figure

    def data_json(self) -> str:
        import plotly.io as pio

        # plotly's own JSON (it knows its types); made script-safe like every other data block.
        figure_json = pio.to_json(self.figure, validate=False, engine="json")
        return escape_json_for_script(f'{{"library":"plotly","config":{json.dumps(PLOTLY_CONFIG)},"figure":{figure_json}}}')

    def save_png(self, path: str | Path, width: int | None = None, height: int | None = None, scale: float = 2) -> Path:
        """Write a PNG through kaleido and the system's Chromium, offline (see ``png.write_png``)."""
        from interp_transformer.vis.png import write_png

        return write_png(self.figure, path, width=width, height=height, scale=scale)


def heatmap(
    values: Tensor | Sequence[Sequence[float]],
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    x_title: str = "",
    y_title: str = "",
    title: str | None = None,
    value_name: str = "value",
    colorscale: str | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
    significant: int = 4,
    square_cells: bool = False,
    kind: str = "heatmap",
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> HeatmapView:
    """Any ``[rows cols]`` matrix; ``x_labels``/``y_labels`` label the columns/rows (shown literally,
    newlines and tabs as ``\\n`` / ``\\t``).

    ``zmin``/``zmax`` fix the colour scale's ends (e.g. ``zmin=0, zmax=1`` to compare several
    detector heatmaps on one scale); by default it spans the values.
    """
    import plotly.graph_objects as go

    _check_color_range(zmin, zmax)
    matrix = _as_matrix(values)
    n_rows, n_cols = matrix.shape
    x_labels = _labels(x_labels, n_cols, "x_labels (one per column)")
    y_labels = _labels(y_labels, n_rows, "y_labels (one per row)")
    finite = matrix[torch.isfinite(matrix)]
    diverging = finite.numel() > 0 and float(finite.min()) < 0 < float(finite.max())
    z = [[None if math.isnan(v) else round_sig(v, significant) for v in row] for row in matrix.tolist()]
    # The hover names each cell's row and column labels; plotly needs them per cell, so past
    # HOVER_LABEL_CELLS cells (where they would dominate the file) it shows positions only.
    labelled = n_rows * n_cols <= HOVER_LABEL_CELLS
    y_name, x_name = plotly_label(y_title or "row"), plotly_label(x_title or "column")
    hover = (
        f"{y_name} %{{y}}: %{{customdata[1]}}<br>{x_name} %{{x}}: %{{customdata[0]}}<br>" if labelled else f"{y_name} %{{y}}<br>{x_name} %{{x}}<br>"
    )
    trace = go.Heatmap(
        z=z,
        x=list(range(n_cols)),
        y=list(range(n_rows)),
        customdata=[[[plotly_label(x), plotly_label(y)] for x in x_labels] for y in y_labels] if labelled else None,
        colorscale=colorscale or (DIVERGING if diverging else SEQUENTIAL),
        zmid=0 if diverging and zmin is None and zmax is None else None,
        zmin=zmin,
        zmax=zmax,
        colorbar={"title": {"text": plotly_label(value_name)}},
        hovertemplate=f"{hover}{plotly_label(value_name)}: %{{z}}<extra></extra>",
        xgap=1 if n_cols <= 64 else 0,
        ygap=1 if n_rows <= 64 else 0,
    )
    figure = go.Figure(trace)
    figure.update_layout(
        title={"text": plotly_label(title)} if title else None,
        xaxis={"title": {"text": plotly_label(x_title)}, **_ticks(x_labels), "side": "bottom", "constrain": "domain"},
        yaxis={
            "title": {"text": plotly_label(y_title)}, **_ticks(y_labels), "autorange": "reversed",
            **({"scaleanchor": "x", "scaleratio": 1, "constrain": "domain"} if square_cells else {}),
        },
        height=max(320, min(1000, 200 + 30 * n_rows)),
        margin={"l": 80, "r": 40, "t": 60 if title else 30, "b": 80},
        plot_bgcolor="white",
    )
    view = HeatmapView(figure, kind=kind, title=None)
    view.warn_if_large(max_bytes, f"it is {n_rows} x {n_cols} values; slice it or pool blocks first")
    return view


def layer_pos_heatmap(
    values: Tensor, tokens: Sequence[str] | None = None, *, title: str | None = None, value_name: str = "value", **options: Any
) -> HeatmapView:
    """``[layer pos]`` (e.g. patching the residual stream at each layer and position); tokens label the positions."""
    matrix = _as_matrix(values)
    return heatmap(
        matrix, x_labels=tokens if tokens is not None else _numbers(matrix.shape[1]), y_labels=_numbers(matrix.shape[0]),
        x_title="pos", y_title="layer", title=title, value_name=value_name, kind="layer_pos_heatmap", **options,
    )


def layer_head_heatmap(values: Tensor, *, title: str | None = None, value_name: str = "value", **options: Any) -> HeatmapView:
    """``[layer head_index]`` (head-detector scores, per-head patching, attribution).

    Options are ``heatmap``'s: ``zmin=0, zmax=1`` puts several detector heatmaps on one colour scale.
    """
    matrix = _as_matrix(values)
    return heatmap(
        matrix, x_labels=_numbers(matrix.shape[1]), y_labels=_numbers(matrix.shape[0]),
        x_title="head_index", y_title="layer", title=title, value_name=value_name, kind="layer_head_heatmap", **options,
    )


def pos_pos_heatmap(
    values: Tensor,
    tokens: Sequence[str] | None = None,
    *,
    key_tokens: Sequence[str] | None = None,
    title: str | None = None,
    value_name: str = "value",
    **options: Any,
) -> HeatmapView:
    """``[query_pos key_pos]`` (one head's pattern or scores, position-to-position effects); tokens label both axes.

    ``key_tokens`` labels the columns when they differ from the rows.
    """
    matrix = _as_matrix(values)
    rows = tokens if tokens is not None else _numbers(matrix.shape[0])
    cols = key_tokens if key_tokens is not None else (tokens if tokens is not None else _numbers(matrix.shape[1]))
    return heatmap(
        matrix, x_labels=cols, y_labels=rows, x_title="key_pos", y_title="query_pos", title=title,
        value_name=value_name, square_cells=True, kind="pos_pos_heatmap", **options,
    )


def _check_color_range(zmin: float | None, zmax: float | None) -> None:
    for name, value in (("zmin", zmin), ("zmax", zmax)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise TypeError(f"{name} must be a finite number or None, got {value!r}")
    if zmin is not None and zmax is not None and zmin >= zmax:
        raise ValueError(f"zmin ({zmin}) must be below zmax ({zmax}); e.g. zmin=0, zmax=1 for scores in [0, 1]")


def _as_matrix(values: Tensor | Sequence[Sequence[float]]) -> Tensor:
    matrix = values.detach().cpu() if isinstance(values, Tensor) else torch.as_tensor(values)
    if matrix.is_complex() or matrix.dtype == torch.bool:
        raise TypeError(f"heatmap values must be real numbers, got dtype {matrix.dtype}")
    if matrix.ndim != 2:
        raise ValueError(f"a heatmap needs a 2-D [rows cols] tensor, got shape {tuple(matrix.shape)}; index or reduce it first")
    if matrix.numel() == 0:
        raise ValueError(f"nothing to draw: shape {tuple(matrix.shape)}")
    return matrix.double()


def _labels(labels: Sequence[str] | None, count: int, what: str) -> list[str]:
    if labels is None:
        return _numbers(count)
    if isinstance(labels, str):
        raise TypeError(f"{what} must be a list of strings, not one string")
    labels = list(labels)
    if len(labels) != count:
        raise ValueError(f"{what}: got {len(labels)} labels for {count} entries")
    for index, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"{what} must hold strings; entry {index} is {type(label).__name__} {label!r}")
    return labels


def _numbers(count: int) -> list[str]:
    return [str(i) for i in range(count)]


def _ticks(labels: list[str]) -> dict:
    # Numeric positions with text ticks: repeated tokens stay separate columns. Long labels are
    # cut and whitespace-only ones marked for the axis only; the hover text has them whole.
    step = max(1, len(labels) // 80)
    positions = list(range(0, len(labels), step))
    text = [plotly_label(visible_label(labels[i], TICK_LABEL_CHARS)) for i in positions]
    return {"tickmode": "array", "tickvals": positions, "ticktext": text}
