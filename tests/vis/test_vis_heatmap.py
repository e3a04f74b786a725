"""Heatmaps: labelled axes in dimension words, literal token ticks, colour scale choice, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from interp_transformer import vis


def figure_of(view: vis.HeatmapView) -> dict:
    return json.loads(view.data_json())["figure"]


def test_layer_pos_heatmap_axes_and_token_ticks() -> None:
    values = torch.arange(6.0).reshape(2, 3)
    figure = figure_of(vis.layer_pos_heatmap(values, ["<s>", " a", "b\n"], title="patching"))
    layout, trace = figure["layout"], figure["data"][0]
    assert layout["xaxis"]["title"]["text"] == "pos" and layout["yaxis"]["title"]["text"] == "layer"
    assert layout["xaxis"]["ticktext"] == ["&lt;s&gt;", " a", "b\\n"], "tokens shown literally (plotly decodes the entities)"
    assert layout["yaxis"]["ticktext"] == ["0", "1"] and layout["yaxis"]["autorange"] == "reversed"
    assert trace["z"] == [[0, 1, 2], [3, 4, 5]]
    assert trace["colorscale"] and trace.get("zmid") is None, "non-negative values: sequential scale"


def test_layer_head_heatmap_diverging_around_zero() -> None:
    figure = figure_of(vis.layer_head_heatmap(torch.tensor([[-1.0, 2.0], [0.5, 0.0]]), value_name="logit diff"))
    trace = figure["data"][0]
    assert figure["layout"]["xaxis"]["title"]["text"] == "head_index"
    assert trace["zmid"] == 0
    assert "logit diff" in trace["hovertemplate"]


def test_pos_pos_heatmap_square_cells_and_key_tokens() -> None:
    figure = figure_of(vis.pos_pos_heatmap(torch.rand(2, 3), ["q0", "q1"], key_tokens=["k0", "k1", "k2"]))
    assert figure["layout"]["yaxis"]["scaleanchor"] == "x"
    assert figure["layout"]["xaxis"]["title"]["text"] == "key_pos"
    assert figure["layout"]["xaxis"]["ticktext"] == ["k0", "k1", "k2"]


def test_nan_cells_are_gaps_and_long_labels_are_cut_on_the_axis_only() -> None:
    values = torch.tensor([[1.0, float("nan")]])
    long = "x" * 40
    figure = figure_of(vis.heatmap(values, x_labels=["a", long]))
    assert figure["data"][0]["z"] == [[1, None]]
    assert figure["layout"]["xaxis"]["ticktext"][1].endswith("…") and len(figure["layout"]["xaxis"]["ticktext"][1]) == 24
    assert figure["data"][0]["customdata"][0][1][0] == long


def test_heatmap_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D \\[rows cols\\]"):
        vis.layer_head_heatmap(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="got 2 labels for 3 entries"):
        vis.layer_pos_heatmap(torch.rand(2, 3), ["a", "b"])
    with pytest.raises(TypeError, match="not one string"):
        vis.layer_pos_heatmap(torch.rand(2, 3), "abc")


def test_no_share_button_that_would_upload_the_figure() -> None:
    config = json.loads(vis.layer_head_heatmap(torch.rand(2, 2)).data_json())["config"]
    assert config["showSendToCloud"] is False and config["plotlyServerURL"] == ""
    assert "sendChartToCloud" in config["modeBarButtonsToRemove"]


def test_figure_edits_reach_the_saved_page(tmp_path) -> None:
    view = vis.layer_head_heatmap(torch.rand(2, 2))
    view.figure.update_layout(title={"text": "edited later"})
    assert "edited later" in view.save(tmp_path / "h.html").read_text(encoding="utf-8")
