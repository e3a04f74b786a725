"""Position labels: short, never blank, whitespace made visible; heatmap ticks use the same labels."""

from __future__ import annotations

import json

import pytest
import torch

from interp_transformer import vis
from interp_transformer.vis.labels import visible_label


@pytest.mark.parametrize(
    ("token", "label"),
    [
        (" the", " the"),  # spaces next to text stay spaces
        ("<s>", "<s>"),  # plain text: escaping is each view's job, done once, later
        ("<|endoftext|>", "<|endoftext|>"),
        (" ", "␣"),
        ("   ", "␣␣␣"),
        ("\n", "\\n"),
        ("\t", "\\t"),
        (" \r\n", "␣\\r\\n"),
        ("\u00a0", "\\u00a0"),
        ("a\nb", "a\\nb"),
        ("x" * 24, "x" * 24),
        ("x" * 25, "x" * 23 + "…"),
        ("ab" * 2500, "ab" * 11 + "a…"),
        (" " * 5000, "␣" * 23 + "…"),
        ("😀" * 30, "😀" * 23 + "…"),
    ],
)
def test_visible_label_hand_worked(token: str, label: str) -> None:
    assert visible_label(token) == label


def test_heatmap_ticks_show_whitespace_only_tokens_and_keep_them_whole_in_the_hover() -> None:
    tokens = [" ", "\n", "ab" * 2500]
    figure = json.loads(vis.layer_pos_heatmap(torch.rand(1, 3), tokens).data_json())["figure"]
    assert figure["layout"]["xaxis"]["ticktext"] == ["␣", "\\n", "ab" * 11 + "a…"], "a space-only tick would be blank"
    assert [x for x, _ in figure["data"][0]["customdata"][0]] == [" ", "\\n", "ab" * 2500], "the hover keeps the whole token"


def test_attention_views_send_short_labels_and_the_exact_tokens_for_tooltips() -> None:
    tokens = ["ab" * 2500, "   ", "<s>"]
    pattern = torch.full((1, 3, 3), 1 / 3)
    grid = json.loads(vis.attention_patterns(pattern, tokens).data_json())
    assert grid["props"]["tokens"] == ["ab" * 11 + "a…", "␣␣␣", "&lt;s&gt;"], "labels, escaped once for innerHTML"
    assert grid["tokenTitles"] == {"selector": "button", "texts": tokens}
    view = vis.attention_pattern(pattern, tokens, head=0)
    assert json.loads(view.data_json())["props"]["tokens"] == ["ab" * 11 + "a…", "␣␣␣", "<s>"], "canvas text is not HTML"
    assert view.data_bytes < 2_000, "the 5,000-character token must not be sent to the chart"
    assert 'title="' + "ab" * 2500 + '">' + "ab" * 11 + "a…</span>" in view.fragment()
    assert 'title="&lt;s&gt;">&lt;s&gt;</span>' in view.fragment(), "strip text and tooltip escaped exactly once"
