"""GPT-NeoX / Pythia conversion: random Hugging Face models of small configs, loaded from a directory.

Every comparison is against Hugging Face's own forward pass or generate. Every parameter
(LayerNorm weights and biases included) is perturbed, so a swapped, transposed or dropped tensor shows up.
"""

from __future__ import annotations

import pytest
import torch
from conftest import edit_config, sample_tokens, save_random_hf_model

from interp_transformer import HookedTransformer, names

BASE = dict(
    hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, vocab_size=300,
    max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)


def make_model(tmp_path, seed: int = 0, **overrides):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    values = dict(BASE, initializer_range=0.3, attn_implementation="eager") | overrides
    directory = tmp_path / f"gpt-neox-{seed}"
    return save_random_hf_model(GPTNeoXForCausalLM, GPTNeoXConfig(**values), directory, seed), directory


# Logits (fused and explicit paths), residual streams and patterns against Hugging Face: tests/loading/test_hf_parity.py.
def test_config_is_converted(tmp_path):
    _, directory = make_model(tmp_path, rotary_pct=0.5, rotary_emb_base=1234.0, use_parallel_residual=False)
    cfg = HookedTransformer.from_pretrained(directory).cfg
    assert (cfg.positional_embedding_type, cfg.rotary_dim, cfg.d_head, cfg.rotary_base) == ("rotary", 4, 8, 1234.0)
    assert cfg.parallel_attn_mlp is False and cfg.act_fn == "gelu" and cfg.original_architecture == "GPTNeoXForCausalLM"
    _, directory = make_model(tmp_path, seed=1)
    assert HookedTransformer.from_pretrained(directory).cfg.parallel_attn_mlp is True


def test_parallel_block_hooks_follow_transformerlens(tmp_path):
    hf_model, directory = make_model(tmp_path)
    model = HookedTransformer.from_pretrained(directory).eval()
    tokens = sample_tokens()
    _, cache = model.run_with_cache(tokens)
    table = names.hook_shapes(model.cfg)
    assert list(cache) == list(table)
    for name, dims in table.items():
        expected = names.concrete_shape(dims, model.cfg, *tokens.shape)
        assert tuple(cache[name].shape) == expected, f"{name}: {tuple(cache[name].shape)} != table {expected}"
    assert "blocks.0.hook_resid_mid" not in cache, "a parallel block has no resid_mid (TransformerLens never fires it)"
    assert "blocks.0.attn.hook_rot_q" in cache and "hook_pos_embed" not in cache
    torch.testing.assert_close(
        cache["blocks.0.hook_resid_post"],
        cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"] + cache["blocks.0.hook_mlp_out"],
    )
    with torch.no_grad():
        hidden = hf_model(tokens, output_hidden_states=True).hidden_states
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], hidden[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("use_past_kv_cache", [True, False])
def test_greedy_generation_of_a_left_padded_batch_matches_hugging_face(tmp_path, use_past_kv_cache):
    hf_model, directory = make_model(tmp_path, rotary_pct=0.5)
    model = HookedTransformer.from_pretrained(directory).eval()
    tokens = sample_tokens(batch=2, pos=8)
    mask = torch.ones_like(tokens)
    mask[1, :3] = 0
    tokens = tokens.masked_fill(mask == 0, 0)
    expected = hf_model.generate(tokens, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=2)
    ours = model.generate(tokens, 12, temperature=0, eos_token_id=2, attention_mask=mask, use_past_kv_cache=use_past_kv_cache)
    assert ours.tolist() == expected.tolist(), "partial-rotary positions or the parallel block differ from Hugging Face's"


def test_fold_ln_preserves_log_probs_of_a_parallel_block(tmp_path):
    hf_model, directory = make_model(tmp_path)
    model = HookedTransformer.from_pretrained(
        directory, fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True
    ).eval()
    tokens = sample_tokens()
    with torch.no_grad():
        expected, actual = hf_model(tokens).logits.log_softmax(-1), model(tokens).log_softmax(-1)
    assert (actual - expected).abs().max() < 1e-4



@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(some_new_knob=3), "some_new_knob"),
        (dict(rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}), "linear"),
        (dict(hidden_act="quick_gelu"), "quick_gelu"),
        (dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.1}), "rotary_pct"),
    ],
)
def test_unsupported_config_is_refused_by_name(tmp_path, changes, match):
    _, directory = make_model(tmp_path)
    edit_config(directory, **changes)
    with pytest.raises(ValueError, match=match):
        HookedTransformer.from_pretrained(directory)


def test_pythia_hub_names_are_known():
    from interp_transformer.loading.architectures import hub_names

    assert hub_names()["pythia-70m"] == "EleutherAI/pythia-70m"
    assert hub_names()["pythia-160m-deduped"] == "EleutherAI/pythia-160m-deduped"
