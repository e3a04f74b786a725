"""TransformerLens-named experiments: TL's result shapes, and each one equal to the hand-built sweep it stands for.

Numerical parity with TransformerLens 3.9 itself is checked by ``benchmarks/patching.py`` (TL is not a
test dependency): every experiment there agrees to ~1e-7.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch
from patching_helpers import logit_diff, tiny_model, token_pair

from interp_transformer import get_act_name, patching
from interp_transformer.names import hook_shapes

L, H = 2, 4  # tiny_model's layers and heads


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    clean, corrupted = token_pair(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    return model, corrupted, cache


P = 9
EXPERIMENTS = {
    "get_act_patch_resid_pre": ((L, P), ("layer", "pos"), "resid_pre"),
    "get_act_patch_resid_mid": ((L, P), ("layer", "pos"), "resid_mid"),
    "get_act_patch_resid_post": ((L, P), ("layer", "pos"), "resid_post"),
    "get_act_patch_attn_out": ((L, P), ("layer", "pos"), "attn_out"),
    "get_act_patch_mlp_out": ((L, P), ("layer", "pos"), "mlp_out"),
    "get_act_patch_attn_head_out_by_pos": ((L, P, H), ("layer", "pos", "head_index"), "z"),
    "get_act_patch_attn_head_q_by_pos": ((L, P, H), ("layer", "pos", "head_index"), "q"),
    "get_act_patch_attn_head_k_by_pos": ((L, P, H), ("layer", "pos", "head_index"), "k"),
    "get_act_patch_attn_head_v_by_pos": ((L, P, H), ("layer", "pos", "head_index"), "v"),
    "get_act_patch_attn_head_pattern_by_pos": ((L, H, P), ("layer", "head_index", "query_pos"), "pattern"),
    "get_act_patch_attn_head_pattern_dest_src_pos": ((L, H, P, P), ("layer", "head_index", "query_pos", "key_pos"), "pattern"),
    "get_act_patch_attn_head_out_all_pos": ((L, H), ("layer", "head_index"), "z"),
    "get_act_patch_attn_head_q_all_pos": ((L, H), ("layer", "head_index"), "q"),
    "get_act_patch_attn_head_k_all_pos": ((L, H), ("layer", "head_index"), "k"),
    "get_act_patch_attn_head_v_all_pos": ((L, H), ("layer", "head_index"), "v"),
    "get_act_patch_attn_head_pattern_all_pos": ((L, H), ("layer", "head_index"), "pattern"),
}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_experiment_has_transformer_lens_shape_and_semantics(setup, name):
    model, corrupted, cache = setup
    shape, axes, site = EXPERIMENTS[name]
    result = getattr(patching, name)(model, corrupted, cache, logit_diff, progress=False)
    assert isinstance(result, torch.Tensor) and tuple(result.shape) == shape, (
        f"{name}: shape {tuple(result.shape)}, TL's is {shape}"
    )
    assert result.axes == axes
    expected = torch.zeros(shape)
    for index in itertools.product(*(range(n) for n in shape)):  # the hand-written loop: one run_with_hooks each
        chosen = dict(zip(axes, index))
        hook = get_act_name(site, chosen.pop("layer"))
        selection = (slice(None), *(chosen.get(dim, slice(None)) for dim in hook_shapes(model.cfg)[hook][1:]))

        def patch(activation, hook, selection=selection):
            activation[selection] = cache[hook.name][selection]
            return activation

        with torch.no_grad():
            expected[index] = logit_diff(model.run_with_hooks(corrupted, fwd_hooks=[(hook, patch)]))
    torch.testing.assert_close(result.values, expected, rtol=0, atol=1e-5)


def test_every_helpers_stack_the_single_experiments(setup):
    model, corrupted, cache = setup
    run = lambda name: getattr(patching, name)(model, corrupted, cache, logit_diff, progress=False)  # noqa: E731
    block = run("get_act_patch_block_every")
    assert tuple(block.shape) == (3, L, P) and block.labels["activation"] == ["resid_pre", "attn_out", "mlp_out"]
    for i, name in enumerate(("resid_pre", "attn_out", "mlp_out")):
        assert torch.equal(block.values[i], run(f"get_act_patch_{name}").values)
    heads = run("get_act_patch_attn_head_all_pos_every")
    assert tuple(heads.shape) == (5, L, H)
    for i, name in enumerate(("out", "q", "k", "v", "pattern")):
        assert torch.equal(heads.values[i], run(f"get_act_patch_attn_head_{name}_all_pos").values), name
    by_pos = run("get_act_patch_attn_head_by_pos_every")
    assert tuple(by_pos.shape) == (5, L, P, H) and by_pos.axes == ("activation", "layer", "pos", "head_index")
    for i, name in enumerate(("out", "q", "k", "v")):
        assert torch.equal(by_pos.values[i], run(f"get_act_patch_attn_head_{name}_by_pos").values), name
    pattern = run("get_act_patch_attn_head_pattern_by_pos")  # [layer head pos], TL rearranges it to [layer pos head]
    assert torch.equal(by_pos.values[4], pattern.values.permute(0, 2, 1))


def _tl_layer_pos_setter(corrupted_activation, index, clean_activation):
    """TransformerLens's ``layer_pos_patch_setter``, verbatim."""
    _layer, pos = index
    corrupted_activation[:, pos, ...] = clean_activation[:, pos, ...]
    return corrupted_activation


def test_generic_activation_patch_takes_transformer_lens_setters(setup):
    model, corrupted, cache = setup
    grid = patching.generic_activation_patch(
        model, corrupted, cache, logit_diff, _tl_layer_pos_setter, "resid_pre", index_axis_names=("layer", "pos"), progress=False
    )
    named = patching.get_act_patch_resid_pre(model, corrupted, cache, logit_diff, progress=False)
    assert torch.equal(grid.values, named.values)
    index_df = patching.make_df_from_ranges([L, P], ["layer", "pos"]).iloc[::4]
    flat = patching.generic_activation_patch(
        model, corrupted, cache, logit_diff, _tl_layer_pos_setter, "resid_pre", index_df=index_df, progress=False
    )
    expected = torch.stack([named.values[layer, pos] for layer, pos in index_df.itertuples(index=False)])
    assert flat.axes == ("location",) and torch.equal(flat.values, expected)
    assert isinstance(index_df, pd.DataFrame)
