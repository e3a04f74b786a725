"""The generic batched patcher: fixed points, batched == looped, agreement with a hand-written hook loop, memory budget."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import ANSWER, WRONG, logit_diff, tiny_model, token_pair

from interp_transformer import patching
from interp_transformer.patching.budget import parse_memory_budget
from interp_transformer.patching.sites import Patch, PatchLocation

SITES = [
    ("resid_pre", ("layer", "pos")),
    ("resid_post", ("layer", "pos")),
    ("mlp_out", ("layer", "pos")),
    ("z", ("layer", "head_index")),
    ("v", ("layer", "pos", "head_index")),
    ("pattern", ("layer", "head_index", "query_pos")),
    ("post", ("layer", "pos")),
    ("embed", ("pos",)),
    ("ln_final.hook_normalized", ("pos",)),
    ("resid_mid", ("layer",)),
    ("ln1.hook_scale", ("layer", "pos")),
    ("ln2.hook_normalized", ("layer", "pos")),  # hooked, a LayerNorm with weights leaves its fused kernel
]


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    clean, corrupted = token_pair(model)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
        clean_logits, corrupted_logits = model(clean), model(corrupted)
    return model, clean, corrupted, clean_cache, corrupted_cache, clean_logits, corrupted_logits


METRICS = {
    "plain function": lambda: logit_diff,
    "LogitDiff": lambda: patching.LogitDiff(ANSWER, WRONG),
    "per prompt": lambda: patching.LogitDiff(ANSWER, WRONG, reduction="none"),
    "loss": lambda: patching.NextTokenLoss(torch.zeros(1)),  # replaced per test with the target tokens
}


def _metric(name: str, tokens: torch.Tensor):
    return patching.NextTokenLoss(tokens) if name == "loss" else METRICS[name]()


@pytest.mark.parametrize("site,axes", SITES)
def test_clean_into_clean_leaves_the_clean_value_everywhere(setup, site, axes):
    model, clean, _, clean_cache, _, clean_logits, _ = setup
    metric = patching.LogitDiff(ANSWER, WRONG, reduction="none")
    result = patching.patch_site(model, clean, clean_cache, metric, site, axes, progress=False)
    expected = metric(clean_logits).expand_as(result)
    torch.testing.assert_close(result.values, expected, rtol=0, atol=1e-5, msg=f"patching {site} clean->clean moved the metric")


@pytest.mark.parametrize("site,axes", SITES)
def test_corrupted_into_corrupted_gives_the_baseline(setup, site, axes):
    model, _, corrupted, _, corrupted_cache, _, corrupted_logits = setup
    result = patching.patch_site(model, corrupted, corrupted_cache, logit_diff, site, axes, progress=False)
    baseline = logit_diff(corrupted_logits)
    torch.testing.assert_close(result.values, baseline.expand_as(result), rtol=0, atol=1e-5)


@pytest.mark.parametrize("metric_name", list(METRICS))
@pytest.mark.parametrize("site,axes", SITES)
def test_batched_and_looped_sweeps_agree_exactly(setup, site, axes, metric_name):
    model, _, corrupted, clean_cache, *_ = setup
    metric = _metric(metric_name, corrupted)
    batched = patching.patch_site(model, corrupted, clean_cache, metric, site, axes, progress=False)
    looped = patching.patch_site(model, corrupted, clean_cache, metric, site, axes, progress=False, max_locations_per_forward=1)
    odd_chunks = patching.patch_site(
        model, corrupted, clean_cache, metric, site, axes, progress=False, max_locations_per_forward=3
    )
    assert torch.equal(batched.values, looped.values), (
        f"{site}: batched and one-forward-per-location results differ by {(batched.values - looped.values).abs().max():.2e}; "
        "a copy in the expanded batch must run exactly the operations of its own forward"
    )
    assert torch.equal(odd_chunks.values, looped.values), f"{site}: chunks of 3 differ from one forward per location"


def test_sweep_matches_a_hand_written_hook_loop(setup):
    """The independent computation: one run_with_hooks per location, full forward from the tokens."""
    model, _, corrupted, clean_cache, *_ = setup
    result = patching.patch_site(model, corrupted, clean_cache, patching.LogitDiff(ANSWER, WRONG), "resid_pre", progress=False)
    expected = torch.zeros(model.cfg.n_layers, corrupted.shape[1])
    for layer in range(model.cfg.n_layers):
        for pos in range(corrupted.shape[1]):

            def patch(activation, hook, pos=pos):
                activation[:, pos] = clean_cache[hook.name][:, pos]
                return activation

            with torch.no_grad():
                expected[layer, pos] = logit_diff(
                    model.run_with_hooks(corrupted, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", patch)])
                )
    torch.testing.assert_close(result.values, expected, rtol=0, atol=1e-5)


def test_patching_everything_at_the_last_layer_recovers_the_clean_run(setup):
    model, _clean, corrupted, clean_cache, _, clean_logits, _ = setup
    location = PatchLocation((Patch(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"),))
    (value,) = patching.patch_locations(model, corrupted, clean_cache, logit_diff, [location], progress=False)
    torch.testing.assert_close(value, logit_diff(clean_logits), rtol=0, atol=1e-5)


def test_several_patches_in_one_location_apply_together(setup):
    model, clean, corrupted, clean_cache, *_ = setup
    every_position = PatchLocation(tuple(Patch("blocks.0.hook_resid_pre", (pos,)) for pos in range(clean.shape[1])))
    whole_layer = PatchLocation((Patch("blocks.0.hook_resid_pre"),))
    values = patching.patch_locations(model, corrupted, clean_cache, logit_diff, [every_position, whole_layer], progress=False)
    assert torch.equal(values[0], values[1]), "patching each position of a layer together should equal patching the layer"


def test_explicit_values_need_no_source(setup):
    model, _, corrupted, clean_cache, *_ = setup
    value = clean_cache["blocks.1.attn.hook_z"][:, :, 2]
    explicit = PatchLocation((Patch("blocks.1.attn.hook_z", (slice(None), 2), value=value),))
    from_cache = PatchLocation((Patch("blocks.1.attn.hook_z", (slice(None), 2)),))
    (a,) = patching.patch_locations(model, corrupted, None, logit_diff, [explicit], progress=False)
    (b,) = patching.patch_locations(model, corrupted, clean_cache, logit_diff, [from_cache], progress=False)
    assert torch.equal(a, b)


def test_memory_budget_sets_the_chunk_size(setup, monkeypatch):
    model, _, corrupted, clean_cache, *_ = setup
    from interp_transformer.patching import runner

    sizes = []
    original = runner.score_copies
    monkeypatch.setattr("interp_transformer.patching.sweep.score_copies", lambda *a: sizes.append(len(a[3])) or original(*a))
    per_location = patching.budget.bytes_per_location(model.cfg, corrupted.shape[0], corrupted.shape[1], True, False)
    patching.patch_site(model, corrupted, clean_cache, logit_diff, "resid_pre", progress=False, memory_budget=3 * per_location)
    assert max(sizes) == 3 and sum(sizes) == model.cfg.n_layers * corrupted.shape[1], f"chunk sizes {sizes}"


@pytest.mark.parametrize(
    "text,expected", [("1GB", 10**9), ("512MB", 512 * 10**6), ("2GiB", 2 * 2**30), ("1.5 kb", 1500), (4096, 4096)]
)
def test_memory_budget_parsing(text, expected):
    assert parse_memory_budget(text) == expected


def test_progress_bar_reports_every_location(setup, capsys):
    model, _, corrupted, clean_cache, *_ = setup
    patching.patch_site(model, corrupted, clean_cache, logit_diff, "z", ("layer", "head_index"), progress=True)
    err = capsys.readouterr().err
    assert "patching z" in err and "8/8" in err, f"expected a tqdm bar over 8 locations on stderr, got {err[-200:]!r}"


def test_left_padded_prompts_with_an_attention_mask():
    model = tiny_model()
    clean, corrupted = token_pair(model)
    mask = torch.ones_like(clean)
    mask[:2, :3] = 0  # two left-padded prompts
    _, cache = model.run_with_cache(clean, attention_mask=mask)
    metric = patching.LogitDiff(ANSWER, WRONG)
    result = patching.patch_site(model, corrupted, cache, metric, "resid_pre", attention_mask=mask, progress=False)
    expected = torch.zeros(model.cfg.n_layers, clean.shape[1])
    for layer in range(model.cfg.n_layers):
        for pos in range(clean.shape[1]):

            def patch(activation, hook, pos=pos):
                activation[:, pos] = cache[hook.name][:, pos]
                return activation

            with torch.no_grad():
                logits = model.run_with_hooks(corrupted, attention_mask=mask, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", patch)])
            expected[layer, pos] = metric(logits)
    torch.testing.assert_close(result.values, expected, rtol=0, atol=1e-5)
