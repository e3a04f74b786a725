"""On the embedded ioi-mini model, patching localises the IOI mechanism to a few heads and positions.

Prompts share one template, ``When IO and S went to the PLACE , S gave a OBJECT to``, so positions
line up; the corruption swaps IO and S everywhere, which flips the answer. The metric is the
normalised IO-minus-S logit difference (clean 1, corrupted 0). Until ioi-mini is shipped these
tests fail, saying so.
"""

from __future__ import annotations

import pytest
import torch
from patching_helpers import IOI_END, IOI_NAME_POSITIONS, ioi_pair, load_ioi_mini

from interp_transformer import patching

ALLOWED_POSITIONS = {*IOI_NAME_POSITIONS.values(), IOI_END}


@pytest.fixture(scope="module")
def ioi():
    model = load_ioi_mini()
    pair = ioi_pair(model)
    logit_diff = patching.LogitDiff(pair.io_ids, pair.s_ids)
    with torch.no_grad():
        clean_logits, corrupted_logits = model(pair.clean), model(pair.corrupted)
        _, cache = model.run_with_cache(pair.clean)
    clean_value, corrupted_value = logit_diff(clean_logits).item(), logit_diff(corrupted_logits).item()
    assert clean_value > 2 and corrupted_value < -2, (
        f"ioi-mini should prefer IO on clean prompts and S on swapped ones; logit diffs {clean_value:.2f}, {corrupted_value:.2f}"
    )
    metric = patching.normalized(logit_diff, clean_value, corrupted_value)
    return model, pair, cache, metric


def test_residual_stream_patching_localises_to_the_names_and_the_end(ioi):
    model, pair, cache, metric = ioi
    for experiment in (patching.get_act_patch_resid_pre, patching.get_act_patch_resid_post):
        result = experiment(model, pair.corrupted, cache, metric, progress=False)
        positions = {int(p) for p in (result.values.abs() > 0.05).nonzero()[:, 1]}
        assert positions <= ALLOWED_POSITIONS, (
            f"{experiment.__name__}: effects at positions {sorted(positions)}, expected only the names and the end {sorted(ALLOWED_POSITIONS)}"
        )
    final = patching.get_act_patch_resid_post(model, pair.corrupted, cache, metric, progress=False).values[-1]
    assert final[IOI_END] == pytest.approx(1.0, abs=1e-4), "the last residual stream at the end position carries everything"


def test_head_patching_localises_to_a_few_heads_and_positions(ioi):
    model, pair, cache, metric = ioi
    by_pos = patching.get_act_patch_attn_head_out_by_pos(model, pair.corrupted, cache, metric, progress=False).values
    effects = by_pos.abs().flatten().sort(descending=True).values
    share = (effects[:8].sum() / effects.sum()).item()
    assert share > 0.75, f"the top 8 of {effects.numel()} (head, position) cells carry only {share:.0%} of the effect"
    positions = {int(p) for p in (by_pos.abs() > 0.05).nonzero()[:, 1]}
    assert positions <= ALLOWED_POSITIONS, f"head outputs matter at positions {sorted(positions)}"
    all_pos = patching.get_act_patch_attn_head_out_all_pos(model, pair.corrupted, cache, metric, progress=False).values
    assert all_pos.max() > 0.25, f"no single head restores a quarter of the effect: {all_pos}"


def test_path_patching_finds_the_heads_writing_the_answer(ioi):
    """Noising the direct path of each head to the logits: only last-layer heads carry the answer, the name movers among them."""
    from interp_transformer.toy.ioi import HEAD_CLASSES

    model, pair, _cache, metric = ioi
    direct = patching.path_patch_heads(model, pair.clean, pair.corrupted, metric, progress=False).values
    drop = 1 - direct
    strong = {divmod(int(i), model.cfg.n_heads) for i in (drop.abs() > 0.1).flatten().nonzero()}
    assert strong and all(layer == model.cfg.n_layers - 1 for layer, _ in strong), f"direct effects above 0.1: {direct}"
    assert set(HEAD_CLASSES["name_movers"]) <= strong, f"the card's name movers should carry the answer directly: {direct}"
    assert drop.sum() < 1.2 * drop[[layer for layer, _ in strong], [head for _, head in strong]].sum(), (
        f"a few heads should carry the direct effect, not many small ones: {direct}")


@pytest.mark.parametrize(
    "site,axes",
    [
        ("z", ("layer", "pos", "head_index")),
        ("v", ("layer", "pos", "head_index")),
        ("resid_pre", ("layer", "pos")),
        ("z", ("layer", "head_index")),
    ],
)
def test_attribution_patching_tracks_activation_patching(ioi, site, axes):
    model, pair, cache, metric = ioi
    actual = patching.patch_site(model, pair.corrupted, cache, metric, site, axes, progress=False).values
    estimate = patching.attribution_patching(model, pair.clean, pair.corrupted, metric, sites=[site]).estimate(site, axes).values
    r = torch.corrcoef(torch.stack([estimate.flatten(), actual.flatten()]))[0, 1].item()
    assert r > 0.85, f"attribution vs activation patching of {site} by {axes} on ioi-mini: correlation {r:.3f}"
