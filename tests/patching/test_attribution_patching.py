"""Attribution patching: exact where the metric is linear, right gradients, and close to real activation patching."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import ANSWER, WRONG, logit_diff, tiny_model, token_pair

from interp_transformer import HookedTransformer, patching


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1].item()


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    clean, corrupted = token_pair(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    return model, clean, corrupted, cache


def test_exact_where_the_metric_is_linear_in_the_activation(setup):
    """Logit difference is linear in the final LayerNorm's output, so the linear estimate is the patching result."""
    model, clean, corrupted, cache = setup
    attribution = patching.attribution_patching(model, clean, corrupted, logit_diff, sites=["ln_final.hook_normalized"])
    estimate = attribution.estimate("ln_final.hook_normalized", ("pos",))
    actual = patching.patch_site(model, corrupted, cache, logit_diff, "ln_final.hook_normalized", ("pos",), progress=False)
    torch.testing.assert_close(estimate.values, actual.values, rtol=0, atol=1e-5)


def test_gradients_match_an_independent_backward(setup):
    model, clean, corrupted, _ = setup
    model.zero_grad(set_to_none=True)
    attribution = patching.attribution_patching(model, clean, corrupted, logit_diff, sites=["resid_pre"])
    assert all(p.grad is None for p in model.parameters()), "attribution patching must not write parameter gradients"
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(corrupted)
    resid = corrupted_cache["blocks.1.hook_resid_pre"].clone().requires_grad_()
    logit_diff(model(resid, start_at_layer=1)).backward()
    torch.testing.assert_close(attribution.gradients["blocks.1.hook_resid_pre"], resid.grad)
    model.zero_grad(set_to_none=True)


def test_granularities_sum_consistently(setup):
    model, clean, corrupted, _ = setup
    attribution = patching.attribution_patching(model, clean, corrupted, logit_diff)
    baseline = attribution.baseline
    by_pos_head = attribution.estimate("z", ("layer", "pos", "head_index")).values - baseline
    by_head = attribution.estimate("z", ("layer", "head_index")).values - baseline
    by_layer = attribution.estimate("z", ("layer",)).values - baseline
    torch.testing.assert_close(by_pos_head.sum(1), by_head)
    torch.testing.assert_close(by_head.sum(1), by_layer)
    per_prompt = patching.attribution_patching(model, clean, corrupted, patching.LogitDiff(ANSWER, WRONG, reduction="none"))
    split = per_prompt.estimate("resid_pre").values - per_prompt.baseline
    assert split.shape == (2, 9, 4)
    torch.testing.assert_close(split.mean(-1), attribution.estimate("resid_pre").values - baseline, atol=1e-6, rtol=1e-5)


def test_same_shapes_as_the_experiments(setup):
    model, clean, corrupted, cache = setup
    attribution = patching.attribution_patching(model, clean, corrupted, logit_diff)
    pairs = {
        ("resid_pre", ("layer", "pos")): patching.get_act_patch_resid_pre,
        ("pattern", ("layer", "head_index", "query_pos")): patching.get_act_patch_attn_head_pattern_by_pos,
        ("v", ("layer", "pos", "head_index")): patching.get_act_patch_attn_head_v_by_pos,
    }
    for (site, axes), experiment in pairs.items():
        estimate = attribution.estimate(site, axes)
        actual = experiment(model, corrupted, cache, logit_diff, progress=False)
        assert estimate.shape == actual.shape and estimate.axes == actual.axes, site


def test_frozen_parameters_still_give_gradients(setup):
    model, clean, corrupted, _ = setup
    model = tiny_model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    attribution = patching.attribution_patching(model, clean, corrupted, logit_diff, sites=["z"])
    assert attribution.gradients["blocks.0.attn.hook_z"].abs().sum() > 0


def induction_pairs(
    model: HookedTransformer, n: int = 8, length: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``<bos> x x[:-1]``: the last token predicts ``x[-1]`` by induction; the corruption changes ``x[-1]`` in the first copy."""
    generator = torch.Generator().manual_seed(3)
    words = torch.randint(3, model.cfg.d_vocab, (n, length), generator=generator)
    bos = torch.zeros(n, 1, dtype=torch.long)
    clean = torch.cat([bos, words, words[:, :-1]], dim=1)
    replacement = (words[:, -1] + 1 - 3) % (model.cfg.d_vocab - 3) + 3
    corrupted = clean.clone()
    corrupted[:, length] = replacement
    return clean, corrupted, words[:, -1], replacement


@pytest.mark.parametrize(
    "site,axes", [("z", ("layer", "head_index")), ("z", ("layer", "pos", "head_index")), ("resid_pre", ("layer", "pos"))]
)
def test_correlates_with_activation_patching_on_the_induction_model(site, axes):
    model = HookedTransformer.from_pretrained("attn-only-2l-induction").eval()
    clean, corrupted, answer, wrong = induction_pairs(model)
    base = patching.LogitDiff(answer, wrong)
    with torch.no_grad():
        metric = patching.normalized_between(base, model(clean), model(corrupted))
        _, cache = model.run_with_cache(clean)
    actual = patching.patch_site(model, corrupted, cache, metric, site, axes, progress=False)
    estimate = patching.attribution_patching(model, clean, corrupted, metric, sites=[site]).estimate(site, axes)
    r = correlation(estimate.values, actual.values)
    assert r > 0.85, f"attribution vs activation patching of {site} by {axes}: correlation {r:.3f}"


def test_rotary_models_without_a_position_embedding_hook():
    # Rotary models have no hook_pos_embed; attribution patching used to ask for it and raise KeyError.
    from interp_transformer import TransformerConfig

    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=30, n_ctx=8,
                            positional_embedding_type="rotary", normalization_type="RMS", act_fn="silu", seed=1)
    model = HookedTransformer(cfg)
    clean, corrupted = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2, 5, 4]])
    metric = lambda logits: logits[:, -1, 3].mean()  # noqa: E731
    attribution = patching.attribution_patching(model, clean, corrupted, metric, sites=["resid_pre"])
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(corrupted)
    resid = corrupted_cache["blocks.1.hook_resid_pre"].clone().requires_grad_()
    metric(model(resid, start_at_layer=1)).backward()
    torch.testing.assert_close(attribution.gradients["blocks.1.hook_resid_pre"], resid.grad)
