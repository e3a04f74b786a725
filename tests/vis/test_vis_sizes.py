"""The file sizes documented in ``interp_transformer/vis/__init__.py`` stay true."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import vis
from interp_transformer.vis.bundle import bundle_js


def causal_pattern(n_heads: int, n_pos: int) -> torch.Tensor:
    scores = torch.randn(n_heads, n_pos, n_pos, generator=torch.Generator().manual_seed(0))
    return scores.masked_fill(torch.ones(n_pos, n_pos).triu(1).bool(), float("-inf")).softmax(-1)


def tokens(n: int) -> list[str]:
    return [f" tok{i}" for i in range(n)]


def within(measured: int, documented: float, slack: float = 0.35) -> bool:
    return abs(measured - documented) <= slack * documented


@pytest.mark.parametrize(
    ("name", "build", "documented"),
    [
        ("attention_patterns 12 x 64", lambda: vis.attention_patterns(causal_pattern(12, 64), tokens(64)), 120e3),
        ("attention_patterns 12 x 128", lambda: vis.attention_patterns(causal_pattern(12, 128), tokens(128)), 440e3),
        ("same, downsample=2", lambda: vis.attention_patterns(causal_pattern(12, 128), tokens(128), downsample=2), 125e3),
        ("attention_pattern 1 x 128", lambda: vis.attention_pattern(causal_pattern(1, 128), tokens(128)), 38e3),
        ("colored_tokens 100", lambda: vis.colored_tokens(tokens(100), torch.randn(100)), 2.7e3),
        ("text_neuron_activations 100 x 2 x 64", lambda: vis.text_neuron_activations(tokens(100), torch.randn(100, 2, 64)), 94e3),
        ("topk_tokens 2 x 100 x 64, k=10", lambda: vis.topk_tokens(tokens(100), torch.randn(2, 100, 64)), 26e3),
        ("layer_head_heatmap 12 x 12", lambda: vis.layer_head_heatmap(torch.randn(12, 12)), 10e3),
        ("layer_pos_heatmap 12 x 100", lambda: vis.layer_pos_heatmap(torch.randn(12, 100), tokens(100)), 36e3),
    ],
)
def test_documented_data_sizes(name: str, build, documented: float) -> None:
    measured = build().data_bytes
    assert within(measured, documented), f"{name}: {measured} bytes, documented ~{documented:.0f}; update the table in vis/__init__.py"


def test_documented_bundle_sizes() -> None:
    assert within(len(bundle_js("circuitsvis").encode()), 1.30e6, 0.1)
    assert within(len(bundle_js("plotly").encode()), 4.82e6, 0.1)


def test_default_limit_warns_at_512_positions_and_downsample_2_fits() -> None:
    pattern = causal_pattern(12, 512)
    with pytest.warns(vis.ViewSizeWarning, match="downsample=2"):
        vis.attention_patterns(pattern, tokens(512))
    assert vis.attention_patterns(pattern, tokens(512), downsample=2).data_bytes < vis.DEFAULT_MAX_BYTES
