"""Reduced precision: model.to(dtype) keeps the config truthful, and bfloat16 stays close to float32.

The reference is the same weights run in float32. LayerNorm statistics and the attention softmax
are computed in float32 inside the components, which is what keeps bfloat16 logits close.
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from interp_transformer import HookedTransformer, TransformerConfig
from interp_transformer.components.kv_cache import KeyValueCache


@pytest.fixture(scope="module")
def gpt2_shaped() -> HookedTransformer:
    """GPT-2 small's widths and vocabulary (4 of its 12 layers, to keep the test fast), random init."""
    cfg = TransformerConfig(n_layers=4, n_ctx=128, seed=0)
    return HookedTransformer(cfg).eval()


def tokens(n_vocab: int, batch: int = 2, pos: int = 64) -> torch.Tensor:
    return torch.randint(0, n_vocab, (batch, pos), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("hook_pattern", [False, True], ids=["fused-kernels", "explicit-pattern-and-scale"])
def test_bfloat16_logits_are_within_0_1_of_float32(gpt2_shaped, hook_pattern):
    model32 = gpt2_shaped
    model16 = HookedTransformer(model32.cfg, init_weights=False).eval()
    model16.load_state_dict(model32.state_dict())
    model16.to(torch.bfloat16)
    ids = tokens(model32.cfg.d_vocab)
    # Hooking the pattern and the LayerNorm scales sends both through the written-out (upcast) paths.
    hooks = [(lambda name: name.endswith(("hook_pattern", "hook_scale")), lambda x, hook: None)] if hook_pattern else []
    with torch.no_grad(), model16.hooks(fwd_hooks=hooks):
        expected, logits = model32(ids), model16(ids)
    assert logits.dtype == torch.bfloat16
    error = (logits.float() - expected).abs().max().item()
    assert expected.std() > 0.1, "float32 logits are nearly constant; the comparison would be vacuous"
    assert error < 0.1, f"bfloat16 logits differ from float32 by {error:.3f} (max-abs); is a LayerNorm or softmax not upcast?"


@pytest.mark.parametrize("convert", ["to", "half", "bfloat16"])
def test_to_dtype_updates_the_config_everywhere(convert):
    model = HookedTransformer(tiny_config())
    target = {"to": torch.float64, "half": torch.float16, "bfloat16": torch.bfloat16}[convert]
    returned = model.to(target) if convert == "to" else getattr(model, convert)()
    assert returned is model
    assert {p.dtype for p in model.parameters()} == {target}
    for name, module in model.named_modules():
        if hasattr(module, "cfg"):
            assert module.cfg.dtype == target, f"{name or 'model'}.cfg.dtype is still {module.cfg.dtype}"
    model.float()
    assert model.cfg.dtype == torch.float32 and model.blocks[0].attn.cfg.dtype == torch.float32


def test_generation_in_bfloat16_uses_a_bfloat16_cache():
    model = HookedTransformer(tiny_config(init_range=0.5)).eval().to(torch.bfloat16)
    prompt = tokens(model.cfg.d_vocab, batch=2, pos=5)
    cache = KeyValueCache.empty(model.cfg, batch=2, device="cpu")
    with torch.no_grad():
        model(prompt, past_kv_cache=cache)
    assert {entry.past_keys.dtype for entry in cache.entries} == {torch.bfloat16}, "the key/value cache is not kept in bfloat16"
    cached = model.generate(prompt, 6, temperature=0, stop_at_eos=False)
    recomputed = model.generate(prompt, 6, temperature=0, stop_at_eos=False, use_past_kv_cache=False)
    assert cached.shape == (2, 11)
    # Positions 6-10 are predicted from the cached keys and values (position 5 from the prompt alone).
    assert cached[:, 5:].tolist() == recomputed[:, 5:].tolist(), "bfloat16 generation with the key/value cache differs from full recomputation"
    assert len(set(cached[:, 5:].flatten().tolist())) > 2, "greedy generation repeats one token; the comparison would be vacuous"


def test_float16_forward_is_finite():
    model = HookedTransformer(tiny_config(init_range=0.5)).eval().half()
    with torch.no_grad():
        logits = model(tokens(model.cfg.d_vocab, pos=40))
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
