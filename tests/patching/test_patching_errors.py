"""Bad input to the patching functions fails early with a message that says what to change."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import ANSWER, logit_diff, tiny_model, token_pair

from interp_transformer import patching


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    clean, corrupted = token_pair(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    return model, clean, corrupted, cache


def test_clean_and_corrupted_of_different_length(setup):
    model, clean, corrupted, cache = setup
    with pytest.raises(ValueError, match="same batch size and token length"):
        patching.get_act_patch_resid_pre(model, corrupted[:, :-1], cache, logit_diff, progress=False)
    with pytest.raises(ValueError, match="same number of prompts and the same token length"):
        patching.attribution_patching(model, clean, corrupted[:, :-2], logit_diff)
    with pytest.raises(ValueError, match="differ in shape"):
        patching.path_patch_heads(model, clean[:2], corrupted, logit_diff)


def test_clean_and_corrupted_of_different_batch(setup):
    model, _, corrupted, cache = setup
    with pytest.raises(ValueError, match=r"need \(2, 9, 4, 8\)"):
        patching.get_act_patch_attn_head_out_all_pos(model, corrupted[:2], cache, logit_diff, progress=False)


def test_cache_without_batch_axis(setup):
    model, clean, corrupted, _ = setup
    _, one = model.run_with_cache(clean[:1], remove_batch_dim=True)
    with pytest.raises(ValueError, match="and the cache its batch axis"):
        patching.get_act_patch_resid_pre(model, corrupted[:1], one, logit_diff, progress=False)


def test_cache_missing_the_site(setup):
    model, clean, corrupted, _ = setup
    _, partial = model.run_with_cache(clean, names_filter=lambda name: name.endswith("hook_z"))
    with pytest.raises(KeyError, match="has no 'blocks.0.hook_resid_pre'.*names_filter"):
        patching.get_act_patch_resid_pre(model, corrupted, partial, logit_diff, progress=False)


@pytest.mark.parametrize(
    "metric,error,pattern",
    [
        (lambda logits: logits[:, -1, ANSWER], ValueError, None),  # fine: one value per prompt
        (lambda logits: logits[:, :, ANSWER], ValueError, r"returned shape \(4, 9\).*scalar.*\[batch=4\]"),
        (lambda logits: logits[:, -1], ValueError, r"returned shape \(4, 300\).*select the answer position"),
        (lambda logits: "good", TypeError, "returned str"),
    ],
)
def test_metric_of_the_wrong_shape(setup, metric, error, pattern):
    model, _, corrupted, cache = setup
    if pattern is None:
        result = patching.get_act_patch_attn_out(model, corrupted, cache, metric, progress=False)
        assert result.axes == ("layer", "pos", "batch")
        return
    with pytest.raises(error, match=pattern):
        patching.get_act_patch_attn_out(model, corrupted, cache, metric, progress=False)


def test_unknown_site(setup):
    model, _, corrupted, cache = setup
    with pytest.raises(KeyError, match=r"unknown patching site 'resid_pree'.*did you mean \['resid_pre'.*valid sites"):
        patching.patch_site(model, corrupted, cache, logit_diff, "resid_pree", progress=False)
    with pytest.raises(KeyError, match="valid sites"):
        patching.attribution_patching(model, corrupted, corrupted, logit_diff, sites=["attn_outt"])


def test_site_missing_from_the_architecture():
    model = tiny_model(attn_only=True)
    clean, corrupted = token_pair(model)
    _, cache = model.run_with_cache(clean)
    with pytest.raises(KeyError, match="unknown patching site 'mlp_out'"):
        patching.get_act_patch_mlp_out(model, corrupted, cache, logit_diff, progress=False)


def test_axes_the_site_does_not_have(setup):
    model, _, corrupted, cache = setup
    with pytest.raises(ValueError, match=r"cannot be patched along \['head_index'\]; its axes are \['layer', 'pos', 'd_model'\]"):
        patching.patch_site(model, corrupted, cache, logit_diff, "resid_pre", ("layer", "head_index"), progress=False)
    with pytest.raises(TypeError, match="tuple of axis names"):
        patching.patch_site(model, corrupted, cache, logit_diff, "resid_pre", "layer", progress=False)


def test_memory_budget_too_small_for_one_example(setup):
    model, _, corrupted, cache = setup
    with pytest.raises(ValueError, match="too small for even one patched run.*raise memory_budget to at least"):
        patching.get_act_patch_resid_pre(model, corrupted, cache, logit_diff, memory_budget="1KB", progress=False)
    with pytest.raises(ValueError, match="'512MB'"):
        patching.get_act_patch_resid_pre(model, corrupted, cache, logit_diff, memory_budget="lots", progress=False)


def test_tokens_must_be_a_batch_of_ids(setup):
    model, _, corrupted, cache = setup
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        patching.get_act_patch_resid_pre(model, corrupted[0], cache, logit_diff, progress=False)
    with pytest.raises(TypeError, match="model.to_tokens"):
        patching.get_act_patch_resid_pre(model, "a prompt", cache, logit_diff, progress=False)


def test_bad_path_patching_specs(setup):
    model, clean, corrupted, _ = setup
    with pytest.raises(ValueError, match="heads 0..3"):
        patching.path_patch(model, clean, corrupted, logit_diff, [patching.Sender("head", 0, 9)])
    with pytest.raises(ValueError, match="'q'"):
        patching.path_patch(model, clean, corrupted, logit_diff, [patching.Sender("mlp", 0)], [patching.Receiver(1, 0, "z")])
    with pytest.raises(ValueError, match="final_residual"):
        patching.path_patch(model, clean, corrupted, logit_diff, [patching.Sender("mlp", 0)], "logits")


def test_normalising_by_an_unchanged_metric(setup):
    with pytest.raises(ValueError, match="does not change it"):
        patching.normalized(logit_diff, 1.0, 1.0)
