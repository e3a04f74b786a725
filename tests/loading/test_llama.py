"""Llama-family conversion (Llama, Qwen2): random Hugging Face models of small configs, loaded from a directory.

Every comparison is against Hugging Face's own forward pass or generate. Every parameter
(RMSNorm weights included) is perturbed, so a swapped, transposed or dropped tensor shows up.
"""

from __future__ import annotations

import pytest
import torch
from conftest import edit_config, sample_tokens, save_random_hf_model

from interp_transformer import HookedTransformer, names

BASE = dict(
    hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=300, max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)


def make_model(tmp_path, family: str, seed: int = 0, **overrides):
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[family]
    values = dict(BASE, initializer_range=0.3, attn_implementation="eager") | overrides
    directory = tmp_path / f"{family}-{seed}"
    return save_random_hf_model(model_cls, config_cls(**values), directory, seed), directory


# Logits, residual streams and attention patterns against Hugging Face: tests/loading/test_hf_parity.py.
def test_config_is_converted(tmp_path):
    _, directory = make_model(tmp_path, "llama", rope_theta=1234.0)
    cfg = HookedTransformer.from_pretrained(directory).cfg
    assert (cfg.normalization_type, cfg.positional_embedding_type, cfg.gated_mlp, cfg.act_fn) == ("RMS", "rotary", True, "silu")
    assert (cfg.n_heads, cfg.n_key_value_heads, cfg.d_head, cfg.rotary_dim, cfg.rotary_base) == (4, 2, 8, 8, 1234.0)
    assert cfg.layer_norm_eps == 1e-5 and cfg.original_architecture == "LlamaForCausalLM"


def test_hooks_have_gpt2_names_plus_rotary_and_gated_mlp(tmp_path):
    hf_model, directory = make_model(tmp_path, "llama")
    model = HookedTransformer.from_pretrained(directory).eval()
    tokens = sample_tokens()
    _, cache = model.run_with_cache(tokens)
    table = names.hook_shapes(model.cfg)
    assert list(cache) == list(table)
    for name, dims in table.items():
        expected = names.concrete_shape(dims, model.cfg, *tokens.shape)
        assert tuple(cache[name].shape) == expected, f"{name}: {tuple(cache[name].shape)} != table {expected}"
    assert "blocks.0.attn.hook_rot_q" in cache and "blocks.0.mlp.hook_pre_linear" in cache and "hook_pos_embed" not in cache
    assert cache["blocks.0.attn.hook_k"].shape[2] == 2, "hook_k should hold the 2 key/value heads"
    with torch.no_grad():
        hidden = hf_model(tokens, output_hidden_states=True).hidden_states
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], hidden[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("use_past_kv_cache", [True, False])
def test_greedy_generation_of_a_left_padded_batch_matches_hugging_face(tmp_path, use_past_kv_cache):
    hf_model, directory = make_model(tmp_path, "llama")
    model = HookedTransformer.from_pretrained(directory).eval()
    tokens = sample_tokens(batch=2, pos=8)
    mask = torch.ones_like(tokens)
    mask[1, :3] = 0
    tokens = tokens.masked_fill(mask == 0, 0)
    expected = hf_model.generate(tokens, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=2)
    ours = model.generate(tokens, 12, temperature=0, eos_token_id=2, attention_mask=mask, use_past_kv_cache=use_past_kv_cache)
    assert ours.tolist() == expected.tolist(), "rotary positions of a left-padded batch differ from Hugging Face's"


def test_fold_ln_and_value_biases_preserve_log_probs(tmp_path):
    hf_model, directory = make_model(tmp_path, "qwen2")
    model = HookedTransformer.from_pretrained(directory, fold_ln=True, center_unembed=True, fold_value_biases=True).eval()
    assert model.cfg.normalization_type == "RMSPre"
    tokens = sample_tokens()
    with torch.no_grad():
        expected, actual = hf_model(tokens).logits.log_softmax(-1), model(tokens).log_softmax(-1)
    assert (actual - expected).abs().max() < 1e-4
    with pytest.raises(ValueError, match="center_writing_weights"):
        HookedTransformer.from_pretrained(directory, center_writing_weights=True)



@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(some_new_knob=3), "some_new_knob"),
        (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0}), "yarn"),
        (dict(mlp_bias=True), "mlp_bias"),
        (dict(hidden_act="quick_gelu"), "quick_gelu"),
    ],
)
def test_unsupported_config_is_refused_by_name(tmp_path, changes, match):
    _, directory = make_model(tmp_path, "llama")
    edit_config(directory, **changes)
    with pytest.raises(ValueError, match=match):
        HookedTransformer.from_pretrained(directory)
