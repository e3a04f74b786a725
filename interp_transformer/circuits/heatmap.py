"""``detector_heatmap``: detector scores drawn by ``vis`` (one ``layer_head_heatmap`` per detector, on one page).

The drawing lives in ``vis``; this adapter keeps ``circuits.detector_heatmap`` and ``circuits.HTMLFigure``
working. ``vis`` is imported when a picture is asked for, so ``import interp_transformer.circuits``
never loads plotly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from interp_transformer.vis import Page


def detector_heatmap(
    scores: Float[Tensor, "layer head_index"] | Mapping[str, Float[Tensor, "layer head_index"]],
    title: str = "Head detector scores",
    vmin: float = 0.0,
    vmax: float | None = None,
) -> "Page":
    """One panel per detector (a dict of ``[layer head_index]`` scores, as ``detect_heads`` returns) or one panel.

    Every panel shares the colour scale ``vmin`` to ``vmax`` (default: the larger of 1 and the highest
    score); hovering a cell shows its exact value. NaN cells are left empty. Returns a ``vis.Page``
    (``.save("file.html")``, displays in notebooks).
    """
    from interp_transformer import vis

    panels = {"": scores} if isinstance(scores, Tensor) else dict(scores)
    if not panels:
        raise ValueError("no scores to draw: pass a [layer head_index] tensor or a dict of them")
    grids = {name: _as_grid(name, value) for name, value in panels.items()}
    if vmax is None:
        finite = _finite_values(grids)
        vmax = max([1.0, *finite])
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    views = [
        vis.layer_head_heatmap(grid, title=name or None, value_name=f"{name} score".strip(), zmin=vmin, zmax=vmax)
        for name, grid in grids.items()
    ]
    return vis.combine(*views, title=title)


def _finite_values(grids: Mapping[str, Tensor]) -> list[float]:
    return [v for grid in grids.values() for v in grid.flatten().tolist() if not math.isnan(v)]


def _as_grid(name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor) or value.ndim != 2:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"scores {name!r} must be a [layer head_index] tensor, got {shape}")
    return value.detach().to(torch.float64).cpu()


def __getattr__(name: str) -> Any:
    if name == "HTMLFigure":  # what detector_heatmap used to return; it returns a vis.Page now
        from interp_transformer.vis import Page

        return Page
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
