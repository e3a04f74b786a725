"""``circuits.detector_heatmap`` draws with ``vis``: one heatmap per detector on one page, the exact scores in
place, one colour scale, escaped labels, saving and refusals. (Moved from tests/circuits when the SVG
drawing in circuits/heatmap.py gave way to vis.)"""

from __future__ import annotations

import json
import math

import pytest
import torch

from interp_transformer import vis
from interp_transformer.circuits import HTMLFigure, detector_heatmap


def traces(page) -> list[dict]:
    return [json.loads(view.data_json())["figure"]["data"][0] for view in page.views]


def test_one_cell_per_head_per_panel_with_exact_values_in_hover():
    scores = {"previous_token": torch.tensor([[0.1, 0.9, 0.2], [0.0, 0.3, 0.4]]), "induction": torch.zeros(2, 3)}
    page = detector_heatmap(scores)
    assert isinstance(page, vis.Page) and isinstance(page, HTMLFigure), "HTMLFigure must keep naming what detector_heatmap returns"
    assert [view.figure.layout.title.text for view in page.views] == ["previous_token", "induction"], "one panel per detector, in order"
    first, second = traces(page)
    assert first["z"] == [[0.1, 0.9, 0.2], [0.0, 0.3, 0.4]] and second["z"] == [[0.0] * 3] * 2, "cells must hold the scores, row = layer"
    assert "previous_token score: %{z}" in first["hovertemplate"], "hovering a cell must show the detector and its exact value"
    assert page._repr_html_(), "the page must display in notebooks"


def test_every_panel_shares_one_scale_and_nan_is_left_empty():
    page = detector_heatmap({"a": torch.tensor([[0.0, 1.0, math.nan]]), "b": torch.tensor([[0.5, 2.5, 0.0]])})
    for trace in traces(page):
        assert (trace["zmin"], trace["zmax"]) == (0.0, 2.5), "default scale: vmin=0 to the larger of 1 and the highest score"
    assert traces(page)[0]["z"][0][2] is None, "a NaN score must be an empty cell, not a colour"
    fixed = traces(detector_heatmap(torch.tensor([[0.2, 0.4]]), vmin=0.1, vmax=0.5))[0]
    assert (fixed["zmin"], fixed["zmax"]) == (0.1, 0.5)


def test_every_label_is_escaped_and_nothing_is_fetched_or_run():
    hostile = '<script>alert("x")</script>&'
    html = detector_heatmap({hostile: torch.ones(1, 1)}, title=hostile).html()
    assert '<script>alert("x")' not in html, "a detector name or title must never become markup"
    assert "&lt;script&gt;" in html, "the title must show escaped"
    assert "Content-Security-Policy" in html, "a saved page must forbid fetches"


def test_save_writes_a_standalone_page(tmp_path):
    path = detector_heatmap(torch.rand(2, 2), title="scores").save(tmp_path / "sub" / "heatmap.html")
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html>") and "scores" in text


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"\[layer head_index\] tensor, got \(4,\)"):
        detector_heatmap(torch.ones(4))
    with pytest.raises(ValueError, match="no scores"):
        detector_heatmap({})
    with pytest.raises(ValueError, match="vmax"):
        detector_heatmap(torch.ones(2, 2), vmin=1.0, vmax=1.0)
