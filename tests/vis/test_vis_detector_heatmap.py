"""Detector scores drawn with ``vis.layer_head_heatmap``: the figure holds the scores passed in, in place, on the asked scale."""

from __future__ import annotations

import json

import pytest
import torch

from interp_transformer import vis

# [layer head_index] detector scores, every value distinct so a transpose or a flip would show.
SCORES = torch.tensor([[0.1, 0.9, 0.25, 0.0], [1.0, 0.333333, 0.5, 0.75]])


def figure_of(view: vis.HeatmapView) -> dict:
    return json.loads(view.data_json())["figure"]


def test_cells_hold_the_scores_row_per_layer_column_per_head() -> None:
    figure = figure_of(vis.layer_head_heatmap(SCORES, title="Head detector: induction", value_name="score"))
    trace, layout = figure["data"][0], figure["layout"]
    assert trace["z"] == [[pytest.approx(v, abs=5e-5) for v in row] for row in SCORES.tolist()], (
        "z must be the scores, one row per layer and one column per head (transposed or reordered?)"
    )
    assert trace["x"] == [0, 1, 2, 3] and trace["y"] == [0, 1], "columns are heads 0..3, rows layers 0..1"
    assert layout["xaxis"]["title"]["text"] == "head_index" and layout["yaxis"]["title"]["text"] == "layer"
    assert layout["xaxis"]["ticktext"] == ["0", "1", "2", "3"] and layout["yaxis"]["ticktext"] == ["0", "1"]
    assert layout["yaxis"]["autorange"] == "reversed", "layer 0 belongs at the top"
    assert trace["customdata"][1][2] == ["2", "1"], "the hover of layer 1, head 2 must name that head and layer"
    assert "score: %{z}" in trace["hovertemplate"] and layout["title"]["text"] == "Head detector: induction"


def test_explicit_colour_range_reaches_the_figure() -> None:
    # Scores from 0.1 to 0.75 would autoscale to that span; the demo wants every detector on 0..1.
    low = SCORES.clamp(max=0.75) * 0.5
    trace = figure_of(vis.layer_head_heatmap(low, zmin=0, zmax=1))["data"][0]
    assert (trace["zmin"], trace["zmax"]) == (0, 1), "zmin/zmax must end up in the plotly trace"
    assert trace.get("zmid") is None and trace["z"][1][1] == pytest.approx(0.1667, abs=1e-4)
    general = figure_of(vis.heatmap(torch.tensor([[-2.0, 3.0]]), zmin=-5, zmax=5))["data"][0]
    assert (general["zmin"], general["zmax"]) == (-5, 5) and general.get("zmid") is None
    auto = figure_of(vis.layer_head_heatmap(low))["data"][0]
    assert auto.get("zmin") is None and auto.get("zmax") is None, "without a range plotly scales to the data"


def test_a_colour_range_that_cannot_be_drawn_is_refused() -> None:
    with pytest.raises(ValueError, match=r"zmin \(1\) must be below zmax \(0\)"):
        vis.layer_head_heatmap(SCORES, zmin=1, zmax=0)
    with pytest.raises(TypeError, match="zmax must be a finite number or None, got nan"):
        vis.layer_head_heatmap(SCORES, zmax=float("nan"))
    with pytest.raises(TypeError, match="zmin must be a finite number or None, got '0'"):
        vis.heatmap(SCORES, zmin="0")
