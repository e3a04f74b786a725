"""Every TransformerLens-named activation-patching experiment against TransformerLens 3.x (opt-in: ``-m reference``).

Same tiny random weights in both libraries, 4 prompts x 8 tokens corrupted at position 2, the logit
difference at the last position as metric: each ``get_act_patch_*`` must give TransformerLens's shape
and values. The experiment runner is in tl_comparisons.py, shared with benchmarks/patching.py.
"""

from __future__ import annotations

import os

import pytest
import tl_comparisons as tlc

pytestmark = [
    pytest.mark.reference,
    pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning"),
]
TOLERANCE = 1e-4
# TransformerLens 3.9's get_act_patch_* experiments, listed so each is its own test case.
EXPERIMENTS = [
    "get_act_patch_attn_head_all_pos_every", "get_act_patch_attn_head_by_pos_every", "get_act_patch_attn_head_k_all_pos",
    "get_act_patch_attn_head_k_by_pos", "get_act_patch_attn_head_out_all_pos", "get_act_patch_attn_head_out_by_pos",
    "get_act_patch_attn_head_pattern_all_pos", "get_act_patch_attn_head_pattern_by_pos",
    "get_act_patch_attn_head_pattern_dest_src_pos", "get_act_patch_attn_head_q_all_pos", "get_act_patch_attn_head_q_by_pos",
    "get_act_patch_attn_head_v_all_pos", "get_act_patch_attn_head_v_by_pos", "get_act_patch_attn_out",
    "get_act_patch_block_every", "get_act_patch_mlp_out", "get_act_patch_resid_mid", "get_act_patch_resid_pre",
]


@pytest.fixture(scope="module")
def pair():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("transformer_lens")
    return tlc.build_patching_pair()


def test_transformer_lens_has_the_experiments_we_mirror(pair):
    names = tlc.experiment_names()
    assert len(names) >= 15, f"TransformerLens lists only {names}: did its patching module move?"
    from interp_transformer import patching

    missing = [name for name in names if not hasattr(patching, name)]
    assert not missing, f"TransformerLens experiments without a counterpart here: {missing}"
    assert sorted(EXPERIMENTS) == names, f"TransformerLens's experiments changed; update EXPERIMENTS: {sorted(set(names) ^ set(EXPERIMENTS))}"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_matches_transformer_lens(pair, name):
    ours, tl = pair
    clean, corrupted = tlc.patching_prompts()
    result, expected = tlc.run_experiment_in_both(name, ours, tl, clean, corrupted)
    assert tuple(result.shape) == tuple(expected.shape), f"{name}: our shape {tuple(result.shape)} != TransformerLens's {tuple(expected.shape)}"
    assert expected.abs().max() > 1e-3, f"{name}: TransformerLens's values are all ~0; the comparison would be vacuous"
    difference = (result.values - expected).abs().max().item()
    assert difference < TOLERANCE, f"{name}: values differ from TransformerLens by {difference:.2e} (axes {result.axes})"
