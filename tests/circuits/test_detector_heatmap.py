"""The detector heatmap: self-contained HTML with inline SVG, escaped labels, notebook display and saving."""

from __future__ import annotations

import re

import pytest
import torch

from interp_transformer.circuits import HTMLFigure, detector_heatmap


def test_one_cell_per_head_per_panel_with_exact_values_in_tooltips():
    scores = {"previous_token": torch.tensor([[0.1, 0.9, 0.2], [0.0, 0.3, 0.4]]), "induction": torch.zeros(2, 3)}
    figure = detector_heatmap(scores)
    assert isinstance(figure, HTMLFigure) and isinstance(figure, str)
    assert figure.count("<svg") == 2 and figure.count("<rect") == 12
    assert "previous_token L0H1: 0.9000" in figure
    for label in ("L0", "L1", "H0", "H2"):
        assert f">{label}</text>" in figure
    assert figure._repr_html_() == str(figure)


def test_colours_follow_the_scale_and_nan_is_grey():
    figure = detector_heatmap(torch.tensor([[0.0, 1.0, float("nan")]]))
    fills = re.findall(r'fill="(#[0-9a-f]{6})"', figure)
    assert fills == ["#f7fbff", "#08306b", "#bbbbbb"], "0 -> lightest, 1 -> darkest, NaN -> grey"


def test_every_label_is_escaped_and_nothing_is_fetched_or_run():
    hostile = '<script>alert("x")</script>&'
    figure = detector_heatmap({hostile: torch.ones(1, 1)}, title=hostile)
    assert "<script" not in figure and "&lt;script&gt;" in figure and "&amp;" in figure
    assert "src=" not in figure and "href" not in figure


def test_save_writes_a_standalone_page(tmp_path):
    figure = detector_heatmap(torch.rand(2, 2), title="scores")
    path = figure.save(tmp_path / "sub" / "heatmap.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and str(figure) in text


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"\[layer head_index\] tensor, got \(4,\)"):
        detector_heatmap(torch.ones(4))
    with pytest.raises(ValueError, match="no scores"):
        detector_heatmap({})
    with pytest.raises(ValueError, match="vmax"):
        detector_heatmap(torch.ones(2, 2), vmin=1.0, vmax=1.0)
