"""PatchingResult: a tensor with named axes, to a tidy DataFrame and to a heatmap saved as HTML."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from patching_helpers import logit_diff

from interp_transformer import HookedTransformer, patching
from interp_transformer.patching.results import PatchingResult


@pytest.fixture(scope="module")
def induction():
    """The embedded induction model (it has a tokenizer, so results get token labels)."""
    model = HookedTransformer.from_pretrained("attn-only-2l-induction").eval()
    clean = model.to_tokens(["river castle garden morning river castle garden"] * 4)
    corrupted = model.to_tokens(["river castle garden morning silver castle garden"] * 4)
    _, cache = model.run_with_cache(clean)
    return model, clean, corrupted, cache


def test_result_is_a_tensor_with_axes_and_token_labels(induction):
    model, _clean, corrupted, cache = induction
    result = patching.get_act_patch_resid_pre(model, corrupted, cache, logit_diff, progress=False)
    assert isinstance(result, torch.Tensor) and result.axes == ("layer", "pos")
    assert result.labels["pos"] == model.to_str_tokens(corrupted[0])
    assert type(result + 1) is torch.Tensor and type(result[0]) is torch.Tensor, "operations must return plain tensors"
    assert type(result.values) is torch.Tensor and result.values.data_ptr() == result.data_ptr()


def test_tidy_dataframe_in_one_call(induction):
    model, _clean, corrupted, cache = induction
    result = patching.get_act_patch_attn_head_out_by_pos(model, corrupted, cache, logit_diff, progress=False)
    frame = result.to_dataframe()
    n_layers, n_pos, n_heads = result.shape
    assert list(frame.columns) == ["layer", "pos", "token", "head_index", "value"]
    assert len(frame) == n_layers * n_pos * n_heads
    row = frame[(frame.layer == 1) & (frame.pos == 5) & (frame.head_index == 2)].iloc[0]
    assert row.value == pytest.approx(result[1, 5, 2].item()) and row.token == result.labels["pos"][5]


def test_stacked_and_per_prompt_axes_in_the_dataframe(induction):
    model, _clean, corrupted, cache = induction
    every = patching.get_act_patch_attn_head_all_pos_every(model, corrupted, cache, logit_diff, progress=False)
    frame = every.to_dataframe()
    assert list(frame.columns) == ["activation", "layer", "head_index", "value"]
    assert set(frame.activation) == {"z", "q", "k", "v", "pattern"}
    per_prompt = patching.get_act_patch_resid_pre(
        model, corrupted, cache, patching.LogitDiff(5, 7, reduction="none"), progress=False
    )
    assert per_prompt.axes == ("layer", "pos", "batch")
    assert list(per_prompt.to_dataframe().columns) == ["layer", "pos", "token", "batch", "value"]


def test_heatmap_with_token_labels_saves_to_html(induction, tmp_path):
    model, _clean, corrupted, cache = induction
    result = patching.get_act_patch_resid_pre(model, corrupted, cache, logit_diff, progress=False)
    view = result.heatmap()
    path = view.save(tmp_path / "resid_pre.html")
    text = path.read_text()
    assert "silver" in text and "<html" in text.lower(), "the saved heatmap should label positions with the prompt's tokens"
    assert "<script" in view._repr_html_(), "a notebook should render the view"
    heads = patching.get_act_patch_attn_head_out_by_pos(model, corrupted, cache, logit_diff, progress=False)
    figure = heads.heatmap(title="heads").figure  # [layer pos head]: pos on x, (layer, head) folded into rows
    assert len(figure.data[0].z) == heads.shape[0] * heads.shape[2] and len(figure.data[0].z[0]) == heads.shape[1]


def test_pickle_deepcopy_and_torch_save_keep_the_axes():
    result = PatchingResult(torch.arange(6.0).reshape(2, 3), ("layer", "pos"), {"pos": ["a", "b", "c"]}, title="t")
    for clone in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
        assert isinstance(clone, PatchingResult) and clone.axes == result.axes and clone.labels == result.labels
        assert torch.equal(clone.values, result.values)
    buffer = io.BytesIO()
    torch.save(result, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=False).labels == {"pos": ["a", "b", "c"]}


def test_axis_names_must_match_the_shape():
    with pytest.raises(ValueError, match="axis names"):
        PatchingResult(torch.zeros(2, 3), ("layer",))
    with pytest.raises(ValueError, match="labels"):
        PatchingResult(torch.zeros(2, 3), ("layer", "pos"), {"pos": ["a"]})


def test_one_axis_results_draw_as_one_row(tmp_path):
    result = PatchingResult(torch.tensor([0.5, -0.25, 1.0]), ("sender",), {"sender": ["L0H1", "MLP0", "embed"]})
    figure = result.heatmap().figure
    assert len(figure.data[0].z) == 1 and list(figure.layout.xaxis.ticktext) == ["L0H1", "MLP0", "embed"]
    assert list(result.to_dataframe().sender) == ["L0H1", "MLP0", "embed"]
    with pytest.raises(ValueError, match="scalar"):
        PatchingResult(torch.tensor(1.0), ()).heatmap()
