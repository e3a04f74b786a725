"""Activations on text: the data each circuitsvis component receives, checked against direct computation."""

from __future__ import annotations

import json

import pytest
import torch

from interp_transformer import vis


def spec_of(view: vis.View) -> dict:
    return json.loads(view.data_json())


def test_colored_tokens_sends_rounded_values_and_bounds() -> None:
    values = torch.tensor([0.123456, -2.0, 1e-7, 3.0])
    spec = spec_of(vis.colored_tokens(list("abcd"), values, min_value=-3, max_value=3, positive_color="green"))
    assert spec["component"] == "ColoredTokens"
    assert spec["props"]["values"] == [0.1235, -2, 1e-7, 3], "4 significant digits, whole numbers as ints"
    assert spec["props"]["minValue"] == -3 and spec["props"]["positiveColor"] == "green"
    assert "negativeColor" not in spec["props"], "unset options are left to circuitsvis's defaults"


def test_colored_tokens_accepts_lists_and_rejects_mismatches() -> None:
    assert spec_of(vis.colored_tokens(["a", "b"], [1, 2]))["props"]["values"] == [1, 2]
    with pytest.raises(ValueError, match="one value per token \\(3\\)"):
        vis.colored_tokens(list("abc"), torch.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        vis.colored_tokens(list("ab"), [1.0, float("nan")])
    with pytest.raises(TypeError, match="not one string"):
        vis.colored_tokens("ab", [1.0, 2.0])


def test_text_neuron_activations_single_and_several_samples() -> None:
    acts = torch.randn(3, 2, 4)
    spec = spec_of(vis.text_neuron_activations(list("abc"), acts, second_dimension_labels=list("wxyz")))
    assert spec["component"] == "TextNeuronActivations"
    assert torch.tensor(spec["props"]["activations"][0]).shape == (3, 2, 4)
    assert spec["props"]["secondDimensionLabels"] == list("wxyz")
    several = spec_of(vis.text_neuron_activations([list("ab"), list("cde")], [torch.randn(2, 1, 5), torch.randn(3, 1, 5)]))
    assert [len(t) for t in several["props"]["tokens"]] == [2, 3]
    one_layer = spec_of(vis.text_neuron_activations(list("ab"), torch.randn(2, 6)))
    assert torch.tensor(one_layer["props"]["activations"][0]).shape == (2, 1, 6), "[pos neuron] gets a layer axis"


def test_text_neuron_activations_bad_input() -> None:
    with pytest.raises(ValueError, match="has 2 positions .* has 3"):
        vis.text_neuron_activations(list("abc"), torch.randn(2, 1, 4))
    with pytest.raises(ValueError, match="2 token lists but 1 activation"):
        vis.text_neuron_activations([list("ab"), list("cd")], [torch.randn(2, 1, 4)])
    with pytest.raises(ValueError, match="same \\[layer neuron\\] sizes"):
        vis.text_neuron_activations([list("ab"), list("cd")], [torch.randn(2, 1, 4), torch.randn(2, 1, 5)])
    with pytest.raises(ValueError, match="3 labels for 4 entries"):
        vis.text_neuron_activations(list("ab"), torch.randn(2, 1, 4), second_dimension_labels=list("xyz"))


def test_topk_tokens_matches_torch_topk() -> None:
    acts = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(0))  # [layer pos neuron]
    spec = spec_of(vis.topk_tokens([list("abcdefg")], [acts], k=3))
    props = spec["props"]
    top = acts.topk(3, dim=1)
    assert props["topkIdxs"][0] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor(props["topkVals"][0], dtype=torch.float32), top.values, atol=1e-3, rtol=1e-3)
    bottom = acts.topk(3, dim=1, largest=False)
    assert props["bottomkIdxs"][0] == bottom.indices.flip(1).tolist(), "bottom k listed from the least negative, as circuitsvis does"


def test_topk_tokens_k_is_capped_by_text_length_and_validated() -> None:
    spec = spec_of(vis.topk_tokens(list("ab"), torch.randn(2, 4), k=10))  # one text, [pos neuron]
    assert torch.tensor(spec["props"]["topkVals"][0]).shape == (1, 2, 4)
    with pytest.raises(ValueError, match="k must be a positive int"):
        vis.topk_tokens(list("ab"), torch.randn(2, 4), k=0)
    with pytest.raises(ValueError, match="\\[layer pos neuron\\]"):
        vis.topk_tokens(list("ab"), torch.randn(2))
