"""The hook-name table in names.py against what a real forward pass fires, and get_act_name shorthand."""

from __future__ import annotations

import re

import pytest
import torch

from interp_transformer import HookedTransformer, TransformerConfig, get_act_name, names

BATCH, POS = 2, 5

CONFIG_VARIANTS = {
    "default": {},
    "attn_only": dict(attn_only=True),
    "LNPre": dict(normalization_type="LNPre"),
    "no_norm": dict(normalization_type=None),
    "attn_result": dict(use_attn_result=True),
    "split_qkv": dict(use_split_qkv_input=True),
    "hook_mlp_in": dict(use_hook_mlp_in=True),
    "split_qkv_LNPre_attn_only": dict(use_split_qkv_input=True, normalization_type="LNPre", attn_only=True),
    "everything_on_no_norm": dict(use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True, normalization_type=None),
    "parallel_rotary_partial": dict(parallel_attn_mlp=True, positional_embedding_type="rotary", rotary_dim=2),
    "parallel_hook_mlp_in_split_qkv": dict(parallel_attn_mlp=True, use_hook_mlp_in=True, use_split_qkv_input=True),
    "local_attention": dict(attn_types=("local", "global"), window_size=2, attn_scale=1.0),
}



def _capture_every_hook(model: HookedTransformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Name -> activation for every hook point that fires, in the order each first fires."""
    fired: dict[str, torch.Tensor] = {}

    def record(activation, hook):
        fired.setdefault(hook.name, activation.detach())

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(lambda name: True, record)])
    return fired


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_hook_table_matches_a_real_cache(cfg, variant):
    cfg = cfg.replace(**CONFIG_VARIANTS[variant])
    model = HookedTransformer(cfg)
    tokens = torch.randint(0, cfg.d_vocab, (BATCH, POS), generator=torch.Generator().manual_seed(0))
    cache = _capture_every_hook(model, tokens)
    table = names.hook_shapes(cfg)

    missing = [n for n in table if n not in cache]
    extra = [n for n in cache if n not in table]
    assert not missing and not extra, (
        f"[{variant}] names.hook_shapes and the forward disagree: in the table but never fired {missing}; "
        f"fired but not in the table {extra}"
    )
    assert list(cache) == list(table), f"[{variant}] the table's order is not the forward order:\n{list(table)}\n{list(cache)}"
    for name, dims in table.items():
        expected = names.concrete_shape(dims, cfg, BATCH, POS)
        assert tuple(cache[name].shape) == expected, f"[{variant}] {name}: table says {dims} = {expected}, forward gave {tuple(cache[name].shape)}"


def test_gpt2_small_table_has_the_transformerlens_cache_keys():
    table = names.hook_shapes(TransformerConfig())
    # Hand count for GPT-2 small: 2 embeddings + 12 blocks x 17 hooks + ln_final's 2 + unembed's 2 = 210 (the
    # size of a TransformerLens 3.x run_with_cache on gpt2 with default settings).
    assert len(table) == 2 + 12 * 17 + 2 + 2, f"expected 210 hook names for GPT-2 small, got {len(table)}"
    assert list(table)[:3] == ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"]
    assert list(table)[-5:] == [
        "blocks.11.hook_resid_post", "ln_final.hook_scale", "ln_final.hook_normalized", "unembed.hook_in", "unembed.hook_out"
    ]
    assert table["blocks.4.attn.hook_pattern"] == ("batch", "head_index", "query_pos", "key_pos")
    assert table["blocks.4.attn.hook_q"] == ("batch", "pos", "head_index", "d_head")
    assert table["blocks.4.mlp.hook_post"] == ("batch", "pos", "d_mlp")
    assert table["blocks.4.ln2.hook_scale"] == ("batch", "pos", 1)
    assert names.concrete_shape(table["blocks.4.mlp.hook_pre"], TransformerConfig(), 3, 7) == (3, 7, 3072)


def test_split_qkv_table_gives_ln1_a_head_axis(cfg):
    table = names.hook_shapes(cfg.replace(use_split_qkv_input=True))
    assert table["blocks.0.ln1.hook_scale"] == ("batch", "pos", "head_index", 1)
    assert table["blocks.0.ln1.hook_normalized"] == ("batch", "pos", "head_index", "d_model")
    assert table["blocks.0.ln2.hook_scale"] == ("batch", "pos", 1), "ln2 reads the un-split residual stream"


@pytest.mark.parametrize(
    "args, expected",
    [
        (("pattern", 3), "blocks.3.attn.hook_pattern"),
        (("attn", 3), "blocks.3.attn.hook_pattern"),
        (("attn_scores", 0), "blocks.0.attn.hook_attn_scores"),
        (("q", 1), "blocks.1.attn.hook_q"),
        (("z", 11), "blocks.11.attn.hook_z"),
        (("result", 2), "blocks.2.attn.hook_result"),
        (("scale", 2, "ln1"), "blocks.2.ln1.hook_scale"),
        (("normalized", 5, "ln2"), "blocks.5.ln2.hook_normalized"),
        (("scale",), "ln_final.hook_scale"),
        (("normalized",), "ln_final.hook_normalized"),
        (("resid_pre", 4), "blocks.4.hook_resid_pre"),
        (("resid_mid", 4), "blocks.4.hook_resid_mid"),
        (("resid_post", 0), "blocks.0.hook_resid_post"),
        (("attn_out", 1), "blocks.1.hook_attn_out"),
        (("mlp_out", 1), "blocks.1.hook_mlp_out"),
        (("pre", 6), "blocks.6.mlp.hook_pre"),
        (("post", 6), "blocks.6.mlp.hook_post"),
        (("mlp_post", 6), "blocks.6.mlp.hook_post"),
        (("q", 2, "a"), "blocks.2.attn.hook_q"),
        (("resid_pre", 2, "b"), "blocks.2.hook_resid_pre"),
        (("embed",), "hook_embed"),
        (("pos_embed",), "hook_pos_embed"),
        (("blocks.3.attn.hook_pattern",), "blocks.3.attn.hook_pattern"),
        (("hook_embed",), "hook_embed"),
        (("ln_final.hook_scale",), "ln_final.hook_scale"),
    ],
)
def test_get_act_name(args, expected):
    assert get_act_name(*args) == expected, f"get_act_name{args} should expand to {expected!r}"


def test_get_act_name_block_layernorm_needs_a_layer_type():
    with pytest.raises(ValueError, match=r"needs layer_type 'ln1' or 'ln2'"):
        get_act_name("scale", 2)


def test_get_act_name_results_exist_in_the_table(cfg):
    table = names.hook_shapes(cfg.replace(use_attn_result=True))
    for args in [("pattern", 1), ("scale", 0, "ln2"), ("scale",), ("resid_pre", 1), ("pre", 0), ("result", 1), ("v", 0)]:
        assert get_act_name(*args) in table, f"get_act_name{args} = {get_act_name(*args)!r} is not a real hook name"


@pytest.mark.parametrize("overrides", [{}, {"use_attn_result": True}, {"attn_only": True}, {"normalization_type": None}])
def test_model_offers_exactly_the_hook_points_in_the_table(cfg, overrides):
    config = cfg.replace(**overrides)
    model = HookedTransformer(config)
    assert list(model.hook_dict) == list(names.hook_shapes(config)), (
        "a hook point exists that the table lacks (or the reverse): hooks on it would never fire"
    )


@pytest.mark.parametrize(
    "args, pattern",
    [
        (("patern", 0), r"unknown activation name 'patern'; did you mean \['pattern'"),
        (("patern",), r"unknown activation name 'patern'; did you mean \['pattern'"),
        (("patern3",), r"unknown activation name 'patern3'; did you mean \['pattern'"),
        (("resid_pree", 1), r"did you mean \['resid_pre'"),
        (("mid", 0), r"unknown activation name 'mid'"),  # TransformerLens's SoLU hook: no model here has it
        (("scale", 0, "ln3"), r"hook_scale lives in layer_type 'ln1' or 'ln2'"),
        (("q", 0, "mlp"), r"hook_q lives in layer_type 'attn'"),
        (("resid_pre",), r"'resid_pre' is computed in every block: give a layer"),
        (("pattern",), r"'pattern' is computed in every block"),
        (("resid_pre", -1), r"layer must be a non-negative int, got -1.*cache\[name, -1\]"),
        (("resid_pre", "1"), r"layer must be a non-negative int, got '1'"),
        (("resid_pre", True), r"layer must be a non-negative int, got True"),
        (("embed", 0), r"hook_embed is outside the blocks"),
    ],
)
def test_get_act_name_refuses_names_no_model_has(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_act_name(*args)


def test_get_act_name_error_is_a_key_error_so_cache_membership_stays_false(cfg):
    from interp_transformer.names import ActNameError

    assert issubclass(ActNameError, KeyError), "cache['patern'] must stay a KeyError (Mapping.__contains__ relies on it)"
    _, cache = HookedTransformer(cfg).run_with_cache(torch.zeros(1, 3, dtype=torch.long))
    assert "patern" not in cache and "resid_pre" not in cache
    assert "pattern3" not in cache, "layer 3 does not exist in a 2-layer model"


def test_every_kind_get_act_name_accepts_names_a_real_hook(cfg):
    """The accepted kinds come from the table: each expands to a hook some configuration has."""
    from interp_transformer.names import _KINDS

    table = {}
    for overrides in ({"use_attn_result": True, "use_split_qkv_input": True, "use_hook_mlp_in": True},
                      {"positional_embedding_type": "rotary", "gated_mlp": True}):
        table |= names.hook_shapes(cfg.replace(**overrides))
    for kind in _KINDS:
        layer_type = "ln1" if kind in ("scale", "normalized") else None
        layer = None if kind in ("embed", "pos_embed") else 0
        assert get_act_name(kind, layer, layer_type) in table, f"get_act_name accepts {kind!r} but no hook has that name"


def test_unembed_hooks_hold_the_unembedding_input_and_the_logits():
    from interp_transformer import HookedTransformer

    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50, n_ctx=8, seed=3)
    model = HookedTransformer(cfg)
    with torch.no_grad():
        model.ln_final.w.uniform_(0.5, 1.5)
        model.ln_final.b.normal_()
    tokens = torch.tensor([[1, 7, 3, 9]])
    logits, cache = model.run_with_cache(tokens)
    by_hand = cache["ln_final.hook_normalized"] * model.ln_final.w + model.ln_final.b
    torch.testing.assert_close(cache["unembed.hook_in"], by_hand, msg="unembed.hook_in should be ln_final's output after w and b")
    torch.testing.assert_close(cache["unembed.hook_out"], logits, rtol=0, atol=0, msg="unembed.hook_out should be the logits")
    torch.testing.assert_close(logits, by_hand @ model.W_U + model.b_U, msg="logits should be hook_in @ W_U + b_U")


def test_docs_hook_table_is_the_generated_one():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "hooks.md").read_text()
    table = names.markdown_hook_table()
    assert text.endswith(table), (
        "docs/hooks.md is out of date with names.py's hook table: replace everything from its '| hook |' line with "
        "names.markdown_hook_table()"
    )


def test_hook_table_markdown_lists_every_hook_of_every_config_variant(cfg):
    table = names.markdown_hook_table()
    for overrides in CONFIG_VARIANTS.values():
        for name in names.hook_shapes(cfg.replace(**overrides)):
            shown = re.sub(r"^blocks\.\d+\.", "blocks.{L}.", name)
            assert f"| `{shown}` |" in table, f"{shown} fires in a real model but is missing from the generated hook table"


@pytest.mark.parametrize(
    "dims, expected",
    [(names.RESID, -2), (names.HEADS, -3), (names.ATTN, -2), (names.SPLIT_SCALE, -3), (("pos", "d_model"), -2)],
)
def test_position_axis_of_dimension_words(dims, expected):
    assert names.position_axis_of(dims) == expected, f"{dims}: the position (or query position) axis counted from the end"


def test_position_axis_of_words_without_positions_is_refused():
    with pytest.raises(ValueError, match="no position axis"):
        names.position_axis_of(("layer", "head_index"))


def test_default_hook_dims_reads_every_table():
    assert names.default_hook_dims("hook_pos_embed") == names.RESID
    assert names.default_hook_dims("blocks.7.attn.hook_rot_q") == names.HEADS
    assert names.default_hook_dims("unembed.hook_out") == names.LOGITS
    assert names.default_hook_dims("blocks.0.attn.hook_nothing") is None and names.default_hook_dims("blocks.x.hook_z") is None
