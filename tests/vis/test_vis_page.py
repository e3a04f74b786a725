"""Pages: bundles once per page, notebook display, file writing, and no network while building anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from interp_transformer import vis
from interp_transformer.vis.bundle import bundle_js


def small_views() -> list[vis.View]:
    pattern = torch.tensor([[[1.0, 0.0], [0.25, 0.75]]])
    return [
        vis.attention_patterns(pattern, ["a", "b"]),
        vis.attention_pattern(pattern, ["a", "b"], head=0),
        vis.colored_tokens(["a", "b"], [0.5, -0.5]),
        vis.layer_head_heatmap(torch.rand(2, 2)),
        vis.layer_pos_heatmap(torch.rand(2, 2), ["a", "b"]),
    ]


def test_combined_page_inlines_each_bundle_once() -> None:
    html = vis.combine(*small_views(), title="Report").html()
    assert html.count('data-itv-bundle="circuitsvis"') == 1
    assert html.count('data-itv-bundle="plotly"') == 1
    assert html.count("window.interpTransformerVis = {") == 1
    assert html.count('class="itv-view"') == 5
    assert html.count("<h1>Report</h1>") == 1
    bundles = len(bundle_js("circuitsvis")) + len(bundle_js("plotly"))
    assert len(html) < bundles + 200_000, "views must not carry their own copy of a bundle"


def test_page_only_carries_the_bundles_it_needs() -> None:
    html = vis.colored_tokens(["a"], [1.0]).html()
    assert 'data-itv-bundle="circuitsvis"' in html and 'data-itv-bundle="plotly"' not in html
    html = vis.layer_head_heatmap(torch.rand(1, 1)).html()
    assert 'data-itv-bundle="plotly"' in html and 'data-itv-bundle="circuitsvis"' not in html


def test_saved_page_forbids_every_fetch() -> None:
    html = vis.colored_tokens(["a"], [1.0]).html()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "unpkg.com" not in html and "cdn." not in html.split('data-itv-bundle="circuitsvis"')[0]


def test_repr_html_is_a_self_contained_fragment() -> None:
    view = vis.colored_tokens(["a", "b"], [0.5, -0.5])
    fragment = view._repr_html_()
    assert "<html" not in fragment and 'data-itv-bundle="circuitsvis"' in fragment
    assert fragment.index("data-itv-bundle") < fragment.index("interpTransformerVis.render(")
    page = vis.combine(view, title="x")
    assert page._repr_html_().count('data-itv-bundle="circuitsvis"') == 1


def test_save_writes_html_and_checks_the_suffix(tmp_path) -> None:
    path = vis.colored_tokens(["a"], [1.0]).save(tmp_path / "deep" / "view.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="ending in .html"):
        vis.colored_tokens(["a"], [1.0]).save(tmp_path / "view.png")


def test_same_view_twice_on_a_page_is_refused() -> None:
    view = vis.colored_tokens(["a"], [1.0])
    with pytest.raises(ValueError, match="appears twice"):
        vis.combine(view, view)
    with pytest.raises(TypeError, match="a page holds views"):
        vis.Page(["not a view"])


def test_building_and_saving_views_never_opens_a_socket_or_imports_circuitsvis_python(tmp_path) -> None:
    # A fresh interpreter, so that no earlier test has imported circuitsvis (whose import pings nothing,
    # but whose render() does): any socket connection fails loudly.
    script = textwrap.dedent(f"""
        import socket, sys
        def refuse(*args, **kwargs):
            raise AssertionError(f"network access attempted: {{args}}")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import torch
        from interp_transformer import vis
        pattern = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
        page = vis.combine(vis.attention_heads(pattern, ["a", "b"]), vis.colored_tokens(["a", "b"], [1, 2]),
                           vis.layer_head_heatmap(torch.rand(2, 2)))
        page.save({str(tmp_path / "page.html")!r})
        page._repr_html_()
        assert "circuitsvis" not in sys.modules, "circuitsvis's Python renderer must never be imported"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
