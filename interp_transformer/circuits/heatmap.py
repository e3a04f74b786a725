"""Layer-by-head heatmaps of detector scores as self-contained HTML (inline SVG, no scripts, no network).

A stand-in until the ``vis`` package (issue 7) provides heatmaps; callers only rely on
``detector_heatmap(scores)`` returning an ``HTMLFigure``, so it can be swapped for that one.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Mapping

import torch
from jaxtyping import Float
from torch import Tensor

CELL = 28
LEFT_MARGIN = 44
TOP_MARGIN = 44
PANEL_GAP = 36
COLOR_LOW = (247, 251, 255)  # white-blue at vmin
COLOR_HIGH = (8, 48, 107)  # dark blue at vmax
COLOR_MISSING = "#bbbbbb"


class HTMLFigure(str):
    """An HTML string that notebooks render (``_repr_html_``) and that ``save`` writes to a file."""

    def _repr_html_(self) -> str:
        return str(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{self}\n</body></html>\n", encoding="utf-8")
        return path


def detector_heatmap(
    scores: Float[Tensor, "layer head_index"] | Mapping[str, Float[Tensor, "layer head_index"]],
    title: str = "Head detector scores",
    vmin: float = 0.0,
    vmax: float | None = None,
) -> HTMLFigure:
    """One panel per detector (a dict of ``[layer head_index]`` scores, as ``detect_heads`` returns) or one panel.

    Colours run from ``vmin`` to ``vmax`` (default: the larger of 1 and the highest score); each cell's
    exact value is in its tooltip. NaN cells are grey.
    """
    panels = {"": scores} if isinstance(scores, Tensor) else dict(scores)
    if not panels:
        raise ValueError("no scores to draw: pass a [layer head_index] tensor or a dict of them")
    values = {name: _as_grid(name, value) for name, value in panels.items()}
    if vmax is None:
        finite = [v for grid in values.values() for row in grid for v in row if not math.isnan(v)]
        vmax = max([1.0, *finite])
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    svgs = [_panel_svg(name, grid, vmin, vmax) for name, grid in values.items()]
    legend = f"colour scale {vmin:g} (light) to {vmax:g} (dark)"
    return HTMLFigure(
        f'<div class="interp-heatmap" style="font-family:sans-serif">'
        f"<h3>{html.escape(title)}</h3><div>{''.join(svgs)}</div>"
        f'<p style="font-size:12px;color:#555">{html.escape(legend)}</p></div>'
    )


def _as_grid(name: str, value: Tensor) -> list[list[float]]:
    if not isinstance(value, Tensor) or value.ndim != 2:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"scores {name!r} must be a [layer head_index] tensor, got {shape}")
    return value.detach().to(torch.float64).cpu().tolist()


def _panel_svg(name: str, grid: list[list[float]], vmin: float, vmax: float) -> str:
    n_layers, n_heads = len(grid), len(grid[0]) if grid else 0
    width, height = LEFT_MARGIN + n_heads * CELL + 8, TOP_MARGIN + n_layers * CELL + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'style="margin-right:{PANEL_GAP}px" role="img" aria-label="{html.escape(name or "scores")}">',
        f'<text x="{LEFT_MARGIN}" y="14" font-size="13" font-weight="bold">{html.escape(name)}</text>',
    ]
    for head in range(n_heads):
        x = LEFT_MARGIN + head * CELL + CELL / 2
        parts.append(f'<text x="{x}" y="{TOP_MARGIN - 6}" font-size="11" text-anchor="middle">{html.escape(f"H{head}")}</text>')
    for layer, row in enumerate(grid):
        y = TOP_MARGIN + layer * CELL
        parts.append(f'<text x="{LEFT_MARGIN - 6}" y="{y + CELL / 2 + 4}" font-size="11" text-anchor="end">{html.escape(f"L{layer}")}</text>')
        for head, value in enumerate(row):
            tooltip = html.escape(f"{name + ' ' if name else ''}L{layer}H{head}: {value:.4f}")
            parts.append(
                f'<rect x="{LEFT_MARGIN + head * CELL}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" '
                f'fill="{_colour(value, vmin, vmax)}"><title>{tooltip}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _colour(value: float, vmin: float, vmax: float) -> str:
    if math.isnan(value):
        return COLOR_MISSING
    t = min(max((value - vmin) / (vmax - vmin), 0.0), 1.0)
    r, g, b = (round(low + t * (high - low)) for low, high in zip(COLOR_LOW, COLOR_HIGH, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"
