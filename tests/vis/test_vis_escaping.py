"""Adversarial tokens: every view's HTML holds no injected markup or script, and gives the tokens back exactly."""

from __future__ import annotations

import json

import pytest
import torch
from vis_html_parsing import parse_page

from interp_transformer import vis
from interp_transformer.vis.bundle import CIRCUITSVIS, PLOTLY, bundle_js
from interp_transformer.vis.escaping import (
    circuitsvis_token_html,
    decode_circuitsvis_token_html,
    escape_html_text,
    escape_json_for_script,
    script_json,
)
from interp_transformer.vis.plotly_text import plotly_label

ADVERSARIAL = [
    "<|endoftext|>",
    "</script><img src=x onerror=alert(1)>",
    "<!--<script>",
    "<s>",
    "&amp;",
    "&lt;b&gt;",
    "😀",
    "\n",
    " ",
    "\t",
    " the",
    "a\r\nb",
    "\u2028\u2029",
    '"quoted" \'single\'',
    "</SCRIPT >",
]
# The attention views' labels for them (worked by hand): at most 24 characters, line breaks and
# tabs spelled out, whitespace-only tokens made visible. The exact tokens go in the tooltips.
ADVERSARIAL_LABELS = [
    "<|endoftext|>",
    "</script><img src=x one…",
    "<!--<script>",
    "<s>",
    "&amp;",
    "&lt;b&gt;",
    "😀",
    "\\n",
    "␣",
    "\\t",
    " the",
    "a\\r\\nb",
    "\\u2028\\u2029",
    '"quoted" \'single\'',
    "</SCRIPT >",
]
N = len(ADVERSARIAL)


def causal_pattern(n_heads: int, n_pos: int, seed: int = 0) -> torch.Tensor:
    scores = torch.randn(n_heads, n_pos, n_pos, generator=torch.Generator().manual_seed(seed))
    return scores.masked_fill(torch.ones(n_pos, n_pos).triu(1).bool(), float("-inf")).softmax(-1)


def every_view() -> dict[str, vis.View]:
    pattern = causal_pattern(3, N)
    values = torch.linspace(-1, 1, N)
    return {
        "attention_patterns": vis.attention_patterns(pattern, ADVERSARIAL, layer=0),
        "attention_heads": vis.attention_heads(pattern, ADVERSARIAL, layer=0),
        "attention_pattern": vis.attention_pattern(pattern, ADVERSARIAL, head=1),
        "colored_tokens": vis.colored_tokens(ADVERSARIAL, values, title="</title><script>alert(1)</script>"),
        "text_neuron_activations": vis.text_neuron_activations(ADVERSARIAL, torch.randn(N, 2, 3)),
        "topk_tokens": vis.topk_tokens([ADVERSARIAL], [torch.randn(2, N, 3)], k=4),
        "pos_pos_heatmap": vis.pos_pos_heatmap(pattern[0], ADVERSARIAL, title="<b>bold?</b>"),
        "layer_pos_heatmap": vis.layer_pos_heatmap(torch.randn(2, N), ADVERSARIAL),
    }


@pytest.fixture(scope="module")
def views() -> dict[str, vis.View]:
    return every_view()


def test_script_data_has_no_characters_that_could_end_or_remode_a_script() -> None:
    text = script_json({"t": ADVERSARIAL})
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}, "script data must hold these only as \\u escapes"
    assert json.loads(text) == {"t": ADVERSARIAL}, "escaping must not change the JSON's meaning"


def test_escape_json_for_script_keeps_meaning_of_any_json() -> None:
    raw = json.dumps({"a": "</script>", "b": ["\u2028", "&", "x<y>z"]}, ensure_ascii=False)
    assert json.loads(escape_json_for_script(raw)) == json.loads(raw)


def test_script_json_refuses_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        script_json({"v": float("nan")})


@pytest.mark.parametrize("token", ADVERSARIAL)
def test_circuitsvis_token_html_round_trips_and_holds_no_markup(token: str) -> None:
    html = circuitsvis_token_html(token)
    assert "<" not in html and ">" not in html, "innerHTML input must not be able to open a tag"
    assert not any(char.isspace() for char in html), "raw whitespace would be rewritten to &nbsp; by circuitsvis"
    assert decode_circuitsvis_token_html(html) == token


def test_html_text_escaping_keeps_carriage_returns_and_quotes() -> None:
    from html import unescape

    for token in ADVERSARIAL:
        escaped = escape_html_text(token)
        assert "<" not in escaped and ">" not in escaped and '"' not in escaped
        assert unescape(escaped) == token


def test_plotly_labels_hold_no_markup() -> None:
    for token in ADVERSARIAL:
        label = plotly_label(token)
        assert "<" not in label and ">" not in label and "\n" not in label


@pytest.mark.parametrize("name", ["attention_patterns", "attention_heads", "attention_pattern", "colored_tokens",
                                  "text_neuron_activations", "topk_tokens", "pos_pos_heatmap", "layer_pos_heatmap"])
def test_saved_page_has_no_injected_elements_or_scripts(views: dict, name: str, tmp_path) -> None:
    html = views[name].save(tmp_path / f"{name}.html").read_text(encoding="utf-8")
    page = parse_page(html)
    tag_names = {tag for tag, _ in page.tags}
    assert not tag_names & {"img", "s", "iframe", "object", "embed", "a", "link"}, f"token text became markup: {tag_names}"
    assert not [attrs for _, attrs in page.tags if any(key.startswith("on") for key in attrs)], "an event-handler attribute got in"
    scripts = page.executable_scripts()
    bundles = [attrs["data-itv-bundle"] for attrs, _ in scripts if "data-itv-bundle" in attrs]
    calls = [text for attrs, text in scripts if "data-itv-bundle" not in attrs and "interpTransformerVis.render(" in text]
    runtime = [text for attrs, text in scripts if "data-itv-bundle" not in attrs and "interpTransformerVis.render(" not in text]
    assert len(bundles) == 1 and len(calls) == 1 and len(runtime) == 1, (
        f"expected exactly one bundle, the runtime and one render call; got {len(scripts)} scripts: a token may have opened one"
    )
    for _, text in page.scripts:
        if "data-itv-bundle" not in _:
            assert "<" not in text, "inline script or data holds '<': a token could end the element"


def test_token_text_round_trips_through_every_view(views: dict, tmp_path) -> None:
    for name, view in views.items():
        page = parse_page(view.save(tmp_path / f"{name}.html").read_text(encoding="utf-8"))
        (spec,) = page.data_blocks().values()
        if spec["library"] == "circuitsvis":
            tokens = spec["props"]["tokens"]
            if spec["component"] in ("TextNeuronActivations", "TopkTokens"):
                (tokens,) = tokens
            if spec["component"] in ("AttentionPatterns", "ColoredTokens", "TextNeuronActivations", "TopkTokens"):
                tokens = [decode_circuitsvis_token_html(token) for token in tokens]
            if spec["component"].startswith("Attention"):
                assert tokens == ADVERSARIAL_LABELS, f"{name}: position labels are not the tokens' short visible labels"
            else:
                assert tokens == ADVERSARIAL, f"{name}: tokens changed on the way into the page"
            if spec["component"] == "AttentionPatterns":
                assert spec["tokenTitles"] == {"selector": "button", "texts": ADVERSARIAL}, f"{name}: tooltips lost the exact tokens"
        else:
            hover = spec["figure"]["data"][0]["customdata"][0]
            assert [x for x, _ in hover] == [plotly_label(token) for token in ADVERSARIAL], f"{name}: hover labels"
        for strip, strip_titles in zip(page.token_strips, page.token_strip_titles, strict=True):
            assert strip == ADVERSARIAL_LABELS, f"{name}: the token strip should show the short visible labels"
            assert strip_titles == ADVERSARIAL, f"{name}: the token strip's tooltips differ from the tokens"


def test_titles_are_escaped(views: dict) -> None:
    fragment = views["colored_tokens"].fragment()
    assert "<script>alert(1)" not in fragment and "&lt;/title&gt;&lt;script&gt;" in fragment


def test_bundles_cannot_end_their_script_element() -> None:
    for name in (CIRCUITSVIS, PLOTLY):
        source = bundle_js(name).lower()
        assert "</script" not in source and "<!--" not in source, f"{name} bundle would break out of <script>"
        assert "sourcemappingurl" not in source, f"{name} bundle still points at a source map file"
