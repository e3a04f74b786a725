"""ActivationCache: shorthand keys, transforms, the residual-stream identities, logit attribution, the logit lens, save/load."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from interp_transformer import HookedTransformer
from interp_transformer.activation_cache import ActivationCache

ATOL = dict(rtol=1e-4, atol=1e-5)


def _randomize_biases_and_ln(model: HookedTransformer) -> HookedTransformer:
    """Non-trivial biases and LayerNorm weights, so identities that forget a bias or a weight fail."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".w"):
                param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
            elif name.rsplit(".", 1)[-1].startswith("b"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture
def rich_model(cfg) -> HookedTransformer:
    return _randomize_biases_and_ln(HookedTransformer(cfg.replace(n_layers=3)))


@pytest.fixture
def rich_cache(rich_model, tokens) -> ActivationCache:
    return rich_model.run_with_cache(tokens)[1]


# ------------------------------------------------------------------------ keys
@pytest.mark.parametrize(
    "key, name",
    [
        (("pattern", 0), "blocks.0.attn.hook_pattern"),
        (("resid_pre", -1), "blocks.2.hook_resid_pre"),
        (("scale", 1, "ln1"), "blocks.1.ln1.hook_scale"),
        (("q", 1, "attn"), "blocks.1.attn.hook_q"),
        (("mlp_out", -3), "blocks.0.hook_mlp_out"),
        ("pattern2", "blocks.2.attn.hook_pattern"),
        ("scale0ln2", "blocks.0.ln2.hook_scale"),
        ("embed", "hook_embed"),
        ("scale", "ln_final.hook_scale"),
        ("blocks.1.hook_resid_mid", "blocks.1.hook_resid_mid"),
    ],
)
def test_shorthand_keys(rich_cache, key, name):
    assert rich_cache[key] is rich_cache.cache_dict[name], f"cache[{key!r}] should be {name}"
    assert key in rich_cache


def test_missing_and_malformed_keys(rich_model, tokens):
    _, cache = rich_model.run_with_cache(tokens, names_filter=lambda n: "attn" in n)
    with pytest.raises(KeyError, match=r"\('resid_pre', 0\) \(= 'blocks.0.hook_resid_pre'\) is not in this cache.*names_filter"):
        cache["resid_pre", 0]
    with pytest.raises(KeyError, match=r"closest cached names: \['blocks.0.attn.hook_pattern'"):
        cache["blocks.0.attn.hook_patern"]
    with pytest.raises(KeyError, match="out of range for a model with 3 layers"):
        cache["pattern", 3]
    with pytest.raises(TypeError, match="must be an int"):
        cache["pattern", "0"]
    with pytest.raises(TypeError, match="a cache key is"):
        cache[0]
    assert ("resid_pre", 0) not in cache and 0 not in cache


# ------------------------------------------------------------------ transforms
def test_to_remove_batch_dim_and_batch_slice(rich_model, tokens):
    _, cache = rich_model.run_with_cache(tokens[:1])
    assert cache.to("meta")["hook_embed"].device.type == "meta"
    _, cache = rich_model.run_with_cache(tokens[:1])
    expected = cache["pattern", 1][0].clone()
    assert cache.remove_batch_dim() is cache and not cache.has_batch_dim
    torch.testing.assert_close(cache["pattern", 1], expected)
    _, batched = rich_model.run_with_cache(tokens)
    with pytest.raises(ValueError, match="batch size is \\[3\\], not 1"):
        batched.remove_batch_dim()
    one = batched.apply_slice_to_batch_dim(1)
    assert not one.has_batch_dim
    torch.testing.assert_close(one["resid_post", 0], batched["resid_post", 0][1])
    assert batched.apply_slice_to_batch_dim((0, 2))["hook_embed"].shape[0] == 2


def test_toggle_autodiff_sets_global_grad_mode(rich_cache):
    try:
        rich_cache.toggle_autodiff(False)
        assert not torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


def test_summary_and_nbytes(rich_model, tokens):
    _, cache = rich_model.run_with_cache(tokens, names_filter=["hook_embed", "blocks.0.attn.hook_pattern"])
    summary = cache.summary()
    assert isinstance(summary, pd.DataFrame)
    assert list(summary.columns) == ["name", "shape", "dtype", "device", "bytes"]
    assert summary.to_dict("records")[1] == {
        "name": "blocks.0.attn.hook_pattern", "shape": (3, 4, 12, 12), "dtype": "float32", "device": "cpu", "bytes": 3 * 4 * 12 * 12 * 4
    }
    assert cache.nbytes() == summary["bytes"].sum() == (3 * 12 * 32 + 3 * 4 * 12 * 12) * 4


# ------------------------------------------------------------- decompositions
def _final_stream(cache: ActivationCache) -> torch.Tensor:
    return cache["resid_post", -1]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"attn_only": True}, {"normalization_type": "LNPre"}, {"normalization_type": None}, {"use_attn_result": True}, {"positional_embedding_type": "shortformer"}],
    ids=["default", "attn_only", "LNPre", "no_norm", "attn_result_cached", "shortformer"],
)
def test_full_decomposition_sums_to_the_stream_it_decomposes(cfg, tokens, overrides):
    model = _randomize_biases_and_ln(HookedTransformer(cfg.replace(n_layers=3, **overrides)))
    _, cache = model.run_with_cache(tokens)
    cases = {"final": (None, False, _final_stream(cache)), "into block 1": (1, False, cache["resid_pre", 1])}
    if not model.cfg.attn_only:
        cases["into block 2's MLP"] = (2, True, cache["resid_mid", 2])
    for label, (layer, mlp_input, stream) in cases.items():
        for expand in (True, False):
            stack, labels = cache.get_full_resid_decomposition(layer, mlp_input=mlp_input, expand_neurons=expand, return_labels=True)
            embeds = ["embed"] if model.cfg.positional_embedding_type == "shortformer" else ["embed", "pos_embed"]
            assert len(labels) == stack.shape[0] and labels[-len(embeds) - 1 :] == [*embeds, "bias"]
            torch.testing.assert_close(stack.sum(0), stream, **ATOL, msg=f"{label}, expand_neurons={expand}: the parts do not sum to the stream")
    _, labels = cache.get_full_resid_decomposition(1, return_labels=True)
    n_neurons = 0 if model.cfg.attn_only else model.cfg.d_mlp
    assert labels[:5] == ["L0H0", "L0H1", "L0H2", "L0H3"] + (["L0N0"] if n_neurons else ["embed"])
    assert len(labels) == model.cfg.n_heads + n_neurons + len(embeds) + 1
    decomposed = cache.decompose_resid()
    torch.testing.assert_close(decomposed.sum(0), _final_stream(cache), **ATOL, msg="decompose_resid parts do not sum to the stream")


def test_head_results_plus_b_O_equal_attn_out(rich_model, rich_cache):
    heads, labels = rich_cache.stack_head_results(return_labels=True)
    assert labels[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"] and len(labels) == 12
    assert "blocks.0.attn.hook_result" not in rich_cache, "stack_head_results computes results without storing them"
    for layer in range(3):
        per_layer = heads[4 * layer : 4 * layer + 4].sum(0) + rich_model.blocks[layer].attn.b_O
        torch.testing.assert_close(per_layer, rich_cache["attn_out", layer], **ATOL, msg=f"layer {layer}: heads + b_O != attn_out")
    rich_cache.compute_head_results()
    torch.testing.assert_close(rich_cache["result", 2].sum(-2) + rich_model.blocks[2].attn.b_O, rich_cache["attn_out", 2], **ATOL)


def test_head_results_from_z_match_hook_result(cfg, tokens):
    model = _randomize_biases_and_ln(HookedTransformer(cfg.replace(use_attn_result=True)))
    _, with_result = model.run_with_cache(tokens)
    _, from_z = model.run_with_cache(tokens, names_filter=lambda n: "result" not in n)
    torch.testing.assert_close(from_z.stack_head_results(), with_result.stack_head_results(), **ATOL)


def test_neuron_results_plus_b_out_equal_mlp_out(rich_model, rich_cache):
    neurons, labels = rich_cache.stack_neuron_results(2, return_labels=True)
    assert labels[:2] == ["L0N0", "L0N1"] and labels[64] == "L1N0" and len(labels) == 128
    torch.testing.assert_close(neurons[64:].sum(0) + rich_model.blocks[1].mlp.b_out, rich_cache["mlp_out", 1], **ATOL)
    some, labels = rich_cache.stack_neuron_results(1, neuron_slice=5, pos_slice=-1, incl_remainder=True, return_labels=True)
    assert labels == ["L0N5", "remainder"] and some.shape == (2, 3, 32)
    torch.testing.assert_close(some.sum(0), rich_cache["resid_pre", 1][:, -1], **ATOL)
    attn_only = HookedTransformer(tiny_config(attn_only=True)).run_with_cache(torch.zeros(1, 3, dtype=torch.long))[1]
    with pytest.raises(ValueError, match="attention-only"):
        attn_only.stack_neuron_results(1)


def test_decompose_and_accumulate_labels_and_sums(rich_cache):
    stack, labels = rich_cache.decompose_resid(return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out", "2_attn_out", "2_mlp_out"]
    torch.testing.assert_close(stack.sum(0), _final_stream(rich_cache), **ATOL)
    stack, labels = rich_cache.decompose_resid(1, mlp_input=True, return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out"]
    torch.testing.assert_close(stack.sum(0), rich_cache["resid_mid", 1], **ATOL)
    assert rich_cache.decompose_resid(mode="attn", return_labels=True)[1] == ["embed", "pos_embed", "0_attn_out", "1_attn_out", "2_attn_out"]
    with pytest.raises(ValueError, match="mode must be"):
        rich_cache.decompose_resid(mode="heads")

    streams, labels = rich_cache.accumulated_resid(incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "2_pre", "2_mid", "final_post"]
    torch.testing.assert_close(streams[-1], _final_stream(rich_cache))
    assert rich_cache.accumulated_resid(1, return_labels=True)[1] == ["0_pre", "1_pre"]
    assert rich_cache.accumulated_resid(1, mlp_input=True, return_labels=True)[1] == ["0_pre", "1_pre", "1_mid"]
    assert rich_cache.accumulated_resid(-2, return_labels=True)[1] == ["0_pre", "1_pre", "2_pre"], "-2 is the input to the last block"
    with pytest.raises(ValueError, match=r"layer must be an int in \[0, 3\]"):
        rich_cache.accumulated_resid(4)
    with pytest.raises(ValueError, match="mlp_input=True needs a block"):
        rich_cache.decompose_resid(None, mlp_input=True)


def test_pos_slice_in_an_analysis_equals_slicing_its_result(rich_cache):
    full = rich_cache.get_full_resid_decomposition(apply_ln=True)
    torch.testing.assert_close(rich_cache.get_full_resid_decomposition(apply_ln=True, pos_slice=-1), full[:, :, -1], **ATOL)
    torch.testing.assert_close(rich_cache.accumulated_resid(apply_ln=True, pos_slice=(2, 5)), rich_cache.accumulated_resid(apply_ln=True)[:, :, 2:5], **ATOL)
    torch.testing.assert_close(rich_cache.stack_head_results(pos_slice=[0, 4]), rich_cache.stack_head_results()[:, :, [0, 4]], **ATOL)


# --------------------------------------------------------------- layer norm
def test_apply_ln_uses_the_cached_scale_linearly(rich_model, rich_cache):
    # The parts, centred and divided by ln2's cached scale of block 1, sum to that LayerNorm's
    # output before its weight and bias, computed here independently with F.layer_norm.
    stack = rich_cache.get_full_resid_decomposition(1, mlp_input=True, apply_ln=True)
    expected = F.layer_norm(rich_cache["resid_mid", 1], (32,), eps=rich_model.cfg.layer_norm_eps)
    torch.testing.assert_close(stack.sum(0), expected, **ATOL)
    one = rich_cache.apply_ln_to_stack(rich_cache["resid_mid", 1][None, :, -1], 1, mlp_input=True, pos_slice=-1)
    torch.testing.assert_close(one[0], expected[:, -1], **ATOL)
    no_norm = HookedTransformer(tiny_config(normalization_type=None)).run_with_cache(torch.zeros(1, 3, dtype=torch.long))[1]
    stack = no_norm.decompose_resid()
    assert no_norm.apply_ln_to_stack(stack) is stack, "without LayerNorm the stack is returned unchanged"


def test_accumulated_resid_apply_ln_at_the_unembed_is_the_logit_lens_normalisation(rich_model, rich_cache):
    streams = rich_cache.accumulated_resid(apply_ln=True)
    raw = rich_cache.accumulated_resid()
    ln_final = rich_model.ln_final
    expected = F.layer_norm(raw, (32,), ln_final.w, ln_final.b, rich_model.cfg.layer_norm_eps)
    torch.testing.assert_close(streams, expected, **ATOL, msg="at the unembed each stream gets the final LayerNorm with its own statistics")
    earlier = rich_cache.accumulated_resid(2, apply_ln=True)
    scale = rich_cache["scale", 2, "ln1"]
    torch.testing.assert_close(earlier, (raw[:3] - raw[:3].mean(-1, keepdim=True)) / scale, **ATOL)


# ------------------------------------------------------------------- logits
def test_logit_attrs_of_the_full_decomposition_sum_to_the_logit_when_ln_is_folded(cfg, tokens):
    model = _randomize_biases_and_ln(HookedTransformer(cfg.replace(normalization_type="LNPre")))
    logits, cache = model.run_with_cache(tokens)
    stack = cache.get_full_resid_decomposition()
    correct, wrong = tokens.roll(-1, dims=1), (tokens + 1) % model.cfg.d_vocab
    attrs = cache.logit_attrs(stack, correct)
    expected = logits.gather(-1, correct[..., None])[..., 0] - model.b_U[correct]
    torch.testing.assert_close(attrs.sum(0), expected, **ATOL, msg="attributions should sum to the logit minus b_U")
    diff = cache.logit_attrs(stack, correct, incorrect_tokens=wrong).sum(0)
    expected_diff = (logits.gather(-1, correct[..., None]) - logits.gather(-1, wrong[..., None]))[..., 0] - model.b_U[correct] + model.b_U[wrong]
    torch.testing.assert_close(diff, expected_diff, **ATOL)
    per_prompt = cache.logit_attrs(stack, torch.tensor([7, 8, 9]))
    torch.testing.assert_close(per_prompt, cache.logit_attrs(stack, torch.tensor([7, 8, 9])[:, None].expand(3, 12)), msg="[batch] tokens apply to every position")
    torch.testing.assert_close(cache.logit_attrs(stack, 7), cache.logit_attrs(stack, torch.tensor(7)))


def test_logit_attrs_leave_out_the_unfolded_final_ln_weight_and_bias(rich_model, rich_cache):
    stack = rich_cache.decompose_resid(pos_slice=-1)
    attrs = rich_cache.logit_attrs(stack, torch.tensor([1, 2, 3]), pos_slice=-1)
    ln_final = rich_model.ln_final
    pre_affine = F.layer_norm(_final_stream(rich_cache)[:, -1], (32,), eps=rich_model.cfg.layer_norm_eps)
    expected = (pre_affine * rich_model.W_U[:, [1, 2, 3]].T).sum(-1)
    torch.testing.assert_close(attrs.sum(0), expected, **ATOL)
    assert not torch.allclose(attrs.sum(0), (F.layer_norm(_final_stream(rich_cache)[:, -1], (32,), ln_final.w, ln_final.b) * rich_model.W_U[:, [1, 2, 3]].T).sum(-1))
    with pytest.raises(ValueError, match="same shape"):
        rich_cache.logit_attrs(stack, torch.tensor([1, 2, 3]), incorrect_tokens=4, pos_slice=-1)
    with pytest.raises(ValueError, match="token ids must be in"):
        rich_cache.logit_attrs(stack, 10_000, pos_slice=-1)
    with pytest.raises(ValueError, match="do not fit the stack"):
        rich_cache.logit_attrs(stack, torch.tensor([1, 2, 3, 4, 5]), pos_slice=-1)


def test_logit_lens(rich_model, tokens):
    rich_model.set_tokenizer(_tokenizer())
    logits, cache = rich_model.run_with_cache(tokens)
    lens = cache.logit_lens()
    assert lens.labels == ["0_pre", "1_pre", "2_pre", "final_post"] and lens.logits.shape == (4, 3, 12, 300)
    torch.testing.assert_close(lens.logits[-1], logits, **ATOL, msg="the last lens entry should be the model's logits")
    top = cache.logit_lens_top_tokens(k=3)
    assert list(top.columns) == ["label", "batch", "pos", "rank", "token", "str_token", "logit", "prob"]
    assert len(top) == 4 * 3 * 1 * 3 and set(top["pos"]) == {11}
    final_top1 = top[(top["label"] == "final_post") & (top["rank"] == 0)]["token"].tolist()
    assert final_top1 == logits[:, -1].argmax(-1).tolist()
    torch.testing.assert_close(
        torch.tensor(top[(top["label"] == "final_post")]["prob"].tolist()),
        logits[:, -1].softmax(-1).topk(3).values.flatten(), **ATOL,
    )
    assert all(isinstance(s, str) and s for s in top["str_token"])
    with pytest.raises(ValueError, match="k must be"):
        cache.logit_lens_top_tokens(k=0)


def _tokenizer():
    from conftest import build_bpe_tokenizer

    return build_bpe_tokenizer()


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip(rich_model, rich_cache, tmp_path):
    path = rich_cache.save(tmp_path / "run1")
    assert path.name == "run1.safetensors" and (tmp_path / "run1.json").is_file()
    sidecar = json.loads((tmp_path / "run1.json").read_text())
    assert sidecar["config_fingerprint"] == rich_model.cfg.fingerprint()
    assert sidecar["shapes"]["blocks.0.attn.hook_pattern"] == [3, 4, 12, 12]
    loaded = ActivationCache.load(tmp_path / "run1.safetensors", model=rich_model)
    assert list(loaded) == list(rich_cache) and loaded.has_batch_dim
    for name in rich_cache:
        assert torch.equal(loaded[name], rich_cache[name]), f"{name} changed in the round trip"
    torch.testing.assert_close(loaded.get_full_resid_decomposition(apply_ln=True), rich_cache.get_full_resid_decomposition(apply_ln=True))


def test_load_without_model_keeps_lookups_but_analyses_ask_for_weights(rich_cache, tmp_path):
    rich_cache.save(tmp_path / "run")
    loaded = ActivationCache.load(tmp_path / "run")
    assert loaded.cfg == rich_cache.cfg and loaded["resid_pre", -1].shape == (3, 12, 32)
    torch.testing.assert_close(loaded.decompose_resid(apply_ln=True), rich_cache.decompose_resid(apply_ln=True))
    with pytest.raises(ValueError, match="no model attached.*model=model"):
        loaded.stack_head_results()


def test_load_refuses_another_model_config_and_damaged_files(rich_cache, tmp_path):
    rich_cache.save(tmp_path / "run")
    other = HookedTransformer(tiny_config(n_layers=4))
    with pytest.raises(ValueError, match="different config.*n_layers: saved 3, model 4"):
        ActivationCache.load(tmp_path / "run", model=other)
    data = (tmp_path / "run.safetensors").read_bytes()
    (tmp_path / "run.safetensors").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="does not match the sha256"):
        ActivationCache.load(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no saved cache"):
        ActivationCache.load(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        rich_cache.save(tmp_path / "file" / "run")
    assert not list(tmp_path.glob(".*.tmp")), "failed saves must not leave temporary files"


def test_save_handles_views_that_share_memory(model, tokens, tmp_path):
    _, cache = model.run_with_cache(tokens, names_filter=[f"blocks.0.attn.hook_{x}" for x in "qkv"])
    cache.save(tmp_path / "qkv")
    loaded = ActivationCache.load(tmp_path / "qkv", model=model)
    for x in "qkv":
        assert torch.equal(loaded[x, 0], cache[x, 0])


def test_old_module_paths_still_import_the_moved_names():
    # The cache moved into interp_transformer.activation_cache; code written against the old modules keeps working.
    import interp_transformer
    from interp_transformer import activation_cache, cache, cache_analysis, cache_io, caching, config_compat, logit_lens

    assert interp_transformer.ActivationCache is cache.ActivationCache is activation_cache.ActivationCache
    assert caching.run_with_cache is activation_cache.run_with_cache and caching.position_axis is activation_cache.position_axis
    assert cache_io.save_cache is activation_cache.save_cache and cache_io.check_same_config is config_compat.check_same_config
    assert cache_analysis.accumulated_bias is activation_cache.accumulated_bias
    assert logit_lens.logit_lens_top_tokens is activation_cache.logit_lens_top_tokens
