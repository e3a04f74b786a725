"""TransformerConfig: GPT-2 small defaults, derived fields, validation messages, immutability and round trips."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from interp_transformer import HookedTransformer, TransformerConfig


def test_defaults_are_gpt2_small():
    cfg = TransformerConfig()
    # The published GPT-2 small hyperparameters (Radford et al. 2019 / the HF gpt2 config.json).
    expected = dict(
        d_model=768,
        n_layers=12,
        n_heads=12,
        d_head=64,
        d_mlp=3072,
        d_vocab=50257,
        n_ctx=1024,
        layer_norm_eps=1e-5,
        init_range=0.02,
        act_fn="gelu_new",
        normalization_type="LN",
        attn_only=False,
        dtype=torch.float32,
    )
    for name, value in expected.items():
        assert getattr(cfg, name) == value, f"default {name} is {getattr(cfg, name)!r}, GPT-2 small has {value!r}"


def test_derived_fields_follow_their_sources(cfg):
    assert cfg.d_vocab_out == cfg.d_vocab, "d_vocab_out should default to d_vocab (untied unembed of the same size)"
    assert cfg.attn_scale == pytest.approx(math.sqrt(cfg.d_head)), "attn_scale should default to sqrt(d_head)"
    gpt2 = TransformerConfig()
    assert gpt2.attn_scale == pytest.approx(8.0), "GPT-2 small scales attention scores by sqrt(64) = 8"
    explicit = TransformerConfig(d_vocab=100, d_vocab_out=7, attn_scale=3.0, d_model=32, n_heads=4, d_head=8)
    assert explicit.d_vocab_out == 7 and explicit.attn_scale == 3.0, "explicit derived fields must not be overwritten"


def test_d_model_mismatch_is_rejected_with_sizes_in_the_message():
    with pytest.raises(ValueError, match=r"d_model \(30\) != n_heads \* d_head \(4 \* 8 = 32\)") as info:
        TransformerConfig(d_model=30, n_heads=4, d_head=8)
    assert "allow_d_model_mismatch=True" in str(info.value), "the error should name the switch that permits a mismatch"


def test_d_model_mismatch_allowed_when_asked_and_the_model_runs():
    cfg = TransformerConfig(
        d_model=24, n_heads=2, d_head=8, d_mlp=48, n_layers=1, d_vocab=50, n_ctx=16, seed=0, allow_d_model_mismatch=True
    )
    assert cfg.d_model != cfg.n_heads * cfg.d_head
    model = HookedTransformer(cfg)
    logits = model(torch.zeros(1, 5, dtype=torch.long))
    assert logits.shape == (1, 5, 50), "a model with d_model != n_heads*d_head should still project z back to d_model"


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(act_fn="swish"), r"act_fn 'swish' is not supported; use one of \['gelu_new', 'gelu', 'gelu_fast', 'relu', 'silu'\]"),
        (dict(normalization_type="BatchNorm"), r"normalization_type 'BatchNorm' is not supported; use one of \['LN', 'LNPre', 'RMS', 'RMSPre', None\]"),
        (dict(positional_embedding_type="alibi"), r"positional_embedding_type 'alibi' is not supported"),
        (dict(positional_embedding_type="rotary", rotary_dim=3), r"rotary_dim must be an even int"),
        (dict(n_key_value_heads=3), r"n_key_value_heads must be a positive int dividing n_heads"),
        (dict(dtype="float8"), r"dtype 'float8' is not supported; use one of \['bfloat16', 'float16', 'float32', 'float64'\]"),
        (dict(n_layers=0), r"n_layers must be a positive int, got 0"),
        (dict(d_vocab=-3), r"d_vocab must be a positive int, got -3"),
        (dict(d_vocab_out=0), r"d_vocab_out must be a positive int, got 0"),
        (dict(d_mlp=None), r"d_mlp must be a positive int for a model with MLPs, got None \(or set attn_only=True\)"),
        (dict(d_mlp=0), r"d_mlp must be a positive int"),
        (dict(layer_norm_eps=0.0), r"layer_norm_eps must be positive, got 0.0"),
        (dict(init_range=-0.1), r"init_range must be positive, got -0.1"),
        (dict(layer_norm_eps=float("nan")), r"layer_norm_eps must be positive, got nan"),
        (dict(attn_scale=0.0), r"attn_scale must be positive, got 0.0"),
        (dict(attn_scale=float("inf")), r"attn_scale must be positive, got inf"),
        (dict(positional_embedding_type="rotary", rotary_base=-1.0), r"rotary_base must be positive, got -1.0"),
        (dict(window_size=0), r"window_size must be a positive int or None, got 0"),
    ],
)
def test_invalid_values_raise_value_error_naming_value_and_alternatives(cfg, overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        cfg.replace(**overrides)


def test_normalization_none_string_means_no_normalisation(cfg):
    assert cfg.replace(normalization_type="none").normalization_type is None, "'none' should be normalised to None"
    assert cfg.replace(normalization_type=None).normalization_type is None
    assert cfg.replace(normalization_type="LNPre").normalization_type == "LNPre"


def test_attn_only_drops_d_mlp(cfg):
    attn_only = cfg.replace(attn_only=True)
    assert attn_only.d_mlp is None, "an attention-only config has no MLP width; d_mlp should be cleared"
    assert TransformerConfig(attn_only=True, d_mlp=None).d_mlp is None, "attn_only with d_mlp=None must validate"


def test_dtype_given_as_string_becomes_torch_dtype(cfg):
    assert cfg.replace(dtype="bfloat16").dtype is torch.bfloat16
    assert cfg.replace(dtype="float64").dtype is torch.float64


def test_config_is_frozen(cfg):
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 64  # type: ignore[misc]
    assert cfg.d_model == 32, "a failed assignment must leave the config unchanged"


def test_config_is_hashable_and_compares_by_value(cfg):
    same = cfg.replace()
    assert same == cfg and hash(same) == hash(cfg), "equal configs should hash equally (frozen dataclass)"
    assert cfg.replace(d_mlp=128) != cfg


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(dtype=torch.bfloat16, attn_only=True, normalization_type=None),
        dict(normalization_type="LNPre", act_fn="relu", use_attn_result=True, use_split_qkv_input=True, seed=None),
        dict(d_vocab_out=17, attn_scale=2.5, tokenizer_name="gpt2"),
    ],
)
def test_to_dict_from_dict_round_trip_through_json(cfg, overrides):
    original = cfg.replace(**overrides)
    as_json = json.dumps(original.to_dict())  # must be JSON-friendly: the dtype becomes a string
    restored = TransformerConfig.from_dict(json.loads(as_json))
    assert restored == original, f"round trip changed the config: {original} -> {restored}"
    assert restored.dtype is original.dtype, "dtype should come back as the same torch.dtype"
    assert restored.fingerprint() == original.fingerprint()


def test_to_dict_writes_dtype_as_plain_name(cfg):
    assert cfg.replace(dtype=torch.float16).to_dict()["dtype"] == "float16"


def test_from_dict_rejects_unknown_fields(cfg):
    values = cfg.to_dict() | {"n_embd": 32, "vocab": 3}
    with pytest.raises(ValueError, match=r"unknown TransformerConfig fields \['n_embd', 'vocab'\]"):
        TransformerConfig.from_dict(values)


def test_replace_changes_only_what_is_asked(cfg):
    changed = cfg.replace(n_layers=5, act_fn="relu")
    assert (changed.n_layers, changed.act_fn) == (5, "relu")
    for f in dataclasses.fields(cfg):
        if f.name not in ("n_layers", "act_fn"):
            assert getattr(changed, f.name) == getattr(cfg, f.name), f"replace() changed unrelated field {f.name}"
    assert cfg.n_layers == 2, "replace() must not mutate the original"


def test_replace_rederives_derived_fields(cfg):
    wider_heads = cfg.replace(d_head=16, d_model=64)
    assert wider_heads.attn_scale == pytest.approx(4.0), "changing d_head should re-derive attn_scale = sqrt(16)"
    bigger_vocab = cfg.replace(d_vocab=500)
    assert bigger_vocab.d_vocab_out == 500, "changing d_vocab should re-derive d_vocab_out"
    explicit = cfg.replace(d_head=16, d_model=64, attn_scale=1.0)
    assert explicit.attn_scale == 1.0, "an attn_scale given to replace() must win over re-derivation"


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        # True == 1 and isinstance(True, int): without a bool check these silently build a 1-layer model.
        (dict(n_layers=True), r"n_layers must be an int, got True \(bool\)"),
        (dict(n_heads=False), r"n_heads must be an int, got False \(bool\)"),
        (dict(d_mlp=True), r"d_mlp must be an int, got True \(bool\)"),
        (dict(n_ctx=2.5), r"n_ctx must be an int, got 2.5 \(float\)"),
        (dict(d_model=32.0), r"d_model must be an int, got 32.0 \(float\)"),
        (dict(seed="0"), r"seed must be an int, got '0' \(str\)"),
        # Any non-empty string is truthy: "no" would silently switch the MLPs off.
        (dict(attn_only="no"), r"attn_only must be True or False, got 'no' \(str\)"),
        (dict(default_prepend_bos=0), r"default_prepend_bos must be True or False, got 0 \(int\)"),
        (dict(layer_norm_eps="1e-5"), r"layer_norm_eps must be a number, got '1e-5' \(str\)"),
        (dict(attn_scale=True), r"attn_scale must be a number, got True \(bool\)"),
    ],
)
def test_wrong_types_raise_type_error(cfg, overrides, pattern):
    with pytest.raises(TypeError, match=pattern):
        cfg.replace(**overrides)
    with pytest.raises(TypeError, match=pattern):
        TransformerConfig(**(cfg.to_dict() | overrides))


def test_replace_rederives_rotary_dim_with_d_head(cfg):
    rotary = cfg.replace(positional_embedding_type="rotary")
    assert rotary.rotary_dim == 8, "rotary_dim should default to d_head"
    wider = rotary.replace(d_head=16, d_model=64)
    assert wider.rotary_dim == 16, (
        f"after replace(d_head=16) rotary_dim is {wider.rotary_dim}: the old derived value was kept, so only half "
        "of each head would rotate"
    )
    assert wider == TransformerConfig(**(cfg.to_dict() | dict(positional_embedding_type="rotary", d_head=16, d_model=64, attn_scale=None))), (
        "replace() should give the same config as building it from scratch"
    )
    assert rotary.replace(positional_embedding_type="standard").rotary_dim is None, "rotary_dim means nothing without rotary"


def test_replace_keeps_derived_fields_that_were_set_explicitly(cfg):
    partial = cfg.replace(positional_embedding_type="rotary", rotary_dim=4)
    assert partial.replace(d_head=16, d_model=64).rotary_dim == 4, "a partial rotary_dim (GPT-NeoX) is not derived: keep it"
    unscaled = cfg.replace(attn_scale=1.0)  # GPT-Neo does not scale attention scores
    assert unscaled.replace(d_head=16, d_model=64).attn_scale == 1.0, "an explicit attn_scale must survive a d_head change"
    assert cfg.replace(positional_embedding_type="rotary", rotary_dim=6).replace(rotary_dim=4).rotary_dim == 4


def test_replace_names_unknown_fields_and_the_closest_ones(cfg):
    with pytest.raises(TypeError, match=r"unknown TransformerConfig fields \['n_layer'\] \(closest: \{'n_layer': \['n_layers'"):
        cfg.replace(n_layer=3)


def test_replace_validates(cfg):
    with pytest.raises(ValueError, match="d_model"):
        cfg.replace(n_heads=3)


def test_fingerprint_is_stable_and_shape_sensitive(cfg):
    assert cfg.fingerprint() == cfg.replace().fingerprint(), "equal configs must fingerprint equally"
    assert len(cfg.fingerprint()) == 16
    assert cfg.fingerprint() != cfg.replace(n_layers=3).fingerprint(), "different shapes must fingerprint differently"


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(attn_types=("global",)), r"attn_types .* each of the 2 layers"),
        (dict(attn_types=("global", "sparse")), r"'global', 'local'.*sparse"),
        (dict(attn_types=("global", "local")), "window_size"),
        (dict(parallel_attn_mlp=True, attn_only=True), "parallel_attn_mlp"),
    ],
)
def test_local_attention_and_parallel_block_switches_are_validated(cfg, overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        cfg.replace(**overrides)


def test_attn_types_from_json_become_a_tuple(cfg):
    values = json.loads(json.dumps(cfg.replace(attn_types=("global", "local"), window_size=4).to_dict()))
    restored = TransformerConfig.from_dict(values)
    assert restored.attn_types == ("global", "local") and hash(restored) == hash(cfg.replace(attn_types=("global", "local"), window_size=4))


def test_one_activation_table_for_config_mlp_and_converters():
    from interp_transformer.activation_functions import ACTIVATION_FUNCTIONS, HF_ACTIVATION_NAMES, activation_from_hf
    from interp_transformer.components import mlp
    from interp_transformer.config import ACT_FNS
    from interp_transformer.loading.architectures import CONVERTERS

    assert ACT_FNS == tuple(ACTIVATION_FUNCTIONS), "config validates act_fn against a list of its own"
    assert mlp.ACTIVATIONS is ACTIVATION_FUNCTIONS, "the MLP has its own activation table"
    for converter in CONVERTERS:
        assert converter.ACTIVATIONS is HF_ACTIVATION_NAMES, f"{converter.__name__} has its own activation table"
    assert set(HF_ACTIVATION_NAMES.values()) <= set(ACT_FNS), "a Hugging Face name maps to an act_fn the config refuses"
    with pytest.raises(ValueError, match=r"GPT-2 activation_function 'quick_gelu' is not supported; supported: \["):
        activation_from_hf("quick_gelu", "GPT-2", "activation_function")
    with pytest.raises(ValueError, match="act_fn 'quick_gelu' is not supported"):
        TransformerConfig(act_fn="quick_gelu")
