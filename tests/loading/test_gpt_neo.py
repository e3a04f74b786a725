"""GPT-Neo conversion: random Hugging Face models of small configs, loaded from a directory.

Every comparison is against Hugging Face's own forward pass or generate. Windows are shorter
than the sequences, so a local layer that attended globally (or a window off by one) shows up.
"""

from __future__ import annotations

import hf_checkpoints
import pytest
import torch
from conftest import edit_config, sample_tokens, save_random_hf_model

from interp_transformer import HookedTransformer, names
from interp_transformer.components.attention import restrict_to_window

BASE = dict(
    hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, vocab_size=300, max_position_embeddings=64,
    attention_types=[[["global", "local"], 1]], window_size=5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)
SHAPES = hf_checkpoints.PARITY_SHAPES["gpt_neo"]


def make_model(tmp_path, seed: int = 0, **overrides):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    values = dict(BASE, initializer_range=0.3, attn_implementation="eager") | overrides
    directory = tmp_path / f"gpt-neo-{seed}"
    return save_random_hf_model(GPTNeoForCausalLM, GPTNeoConfig(**values), directory, seed), directory


# Logits, residual streams and attention patterns against Hugging Face: tests/loading/test_hf_parity.py.
def test_config_is_converted(tmp_path):
    _, directory = make_model(tmp_path, **SHAPES["local-global-x2-untied-relu"])
    cfg = HookedTransformer.from_pretrained(directory).cfg
    assert cfg.attn_types == ("local", "global", "local", "global") and cfg.window_size == 3
    assert (cfg.attn_scale, cfg.d_mlp, cfg.act_fn, cfg.parallel_attn_mlp) == (1.0, 128, "relu", False)


def test_local_layers_see_only_their_window(tmp_path):
    _, directory = make_model(tmp_path)
    model = HookedTransformer.from_pretrained(directory).eval()
    tokens = sample_tokens()
    _, cache = model.run_with_cache(tokens)
    table = names.hook_shapes(model.cfg)
    assert list(cache) == list(table), "GPT-Neo should have exactly GPT-2's hook names"
    global_pattern, local_pattern = cache["pattern", 0], cache["pattern", 1]
    query_pos, key_pos = torch.arange(20)[:, None], torch.arange(20)[None, :]
    outside_window = (key_pos <= query_pos - 5) | (key_pos > query_pos)
    assert local_pattern[..., outside_window].abs().max() == 0, "a local layer attended outside its window"
    assert global_pattern[..., key_pos <= query_pos - 5].abs().min() > 0, "the global layer should see every earlier key"


def test_restrict_to_window_with_a_cache_offset():
    # Two new queries at positions 4 and 5 of 6 keys, window 3: keys 2-4 and 3-5.
    allowed = restrict_to_window(None, query_len=2, key_len=6, window_size=3, device=torch.device("cpu"))
    assert allowed[0, 0].int().tolist() == [[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1]]
    padded = torch.tensor([[[[True, False, True, True, True, True]] * 2]])
    assert restrict_to_window(padded, 2, 6, 4, torch.device("cpu"))[0, 0].int().tolist() == [[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]


@pytest.mark.parametrize("use_past_kv_cache", [True, False])
def test_greedy_generation_past_the_window_matches_hugging_face(tmp_path, use_past_kv_cache):
    hf_model, directory = make_model(tmp_path, window_size=3)
    model = HookedTransformer.from_pretrained(directory).eval()
    tokens = sample_tokens(batch=2, pos=6)
    expected = hf_model.generate(tokens, max_new_tokens=14, do_sample=False, pad_token_id=0, eos_token_id=None)
    ours = model.generate(tokens, 14, temperature=0, stop_at_eos=False, use_past_kv_cache=use_past_kv_cache)
    assert ours.tolist() == expected.tolist(), "the local window slides differently from Hugging Face's over the cache"


def test_fold_ln_and_centring_preserve_log_probs(tmp_path):
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
        (dict(attention_layers=["global", "sparse"]), "sparse"),
        (dict(activation_function="quick_gelu"), "quick_gelu"),
    ],
)
def test_unsupported_config_is_refused_by_name(tmp_path, changes, match):
    _, directory = make_model(tmp_path)
    edit_config(directory, **changes)
    with pytest.raises(ValueError, match=match):
        HookedTransformer.from_pretrained(directory)


def test_gpt_neo_hub_names_are_known():
    from interp_transformer.loading.architectures import hub_names

    assert hub_names()["gpt-neo-125M"] == "EleutherAI/gpt-neo-125M"
