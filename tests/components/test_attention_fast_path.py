"""The fused fast path (``Attention.forward_fused``: fused q/k/v addmm, SDPA, output addmm) computes what the
reading path (``Attention.forward``: einsums q, k, v -> scores -> mask -> pattern -> z -> out) computes.

Whole models are run twice on the same weights: once with no hooks (every attention layer takes the fast
path) and once with a no-op hook on every ``hook_pattern`` (which forces the reading path and changes
nothing else), over several shapes, padding masks, grouped-query attention, rotary embeddings, local
windows and a key/value cache. Tolerance: 1e-10 in float64, where both paths are the same algebra and
differ only in summation order; 2e-5 in float32 (logits of order 1).
"""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer, TransformerConfig
from interp_transformer.components.attention import Attention
from interp_transformer.components.kv_cache import KeyValueCache

BASE = dict(d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=32, n_layers=2)
VARIANTS = {
    "gpt2": {},
    "rotary_partial_parallel": dict(positional_embedding_type="rotary", rotary_dim=4, parallel_attn_mlp=True),
    "llama_gqa": dict(
        normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True, act_fn="silu", n_key_value_heads=2
    ),
    "local_windows": dict(attn_types=("local", "global"), window_size=3, attn_scale=1.0),
}
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5}


def random_model(variant: str, dtype: torch.dtype) -> HookedTransformer:
    model = HookedTransformer(TransformerConfig(**BASE, **VARIANTS[variant], dtype=dtype, seed=0)).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():  # biases and norm weights too, so a dropped or misplaced term shows
            param.add_(torch.randn(param.shape, generator=generator, dtype=torch.float64).to(dtype) * 0.3)
    return model


def run(model: HookedTransformer, tokens, reading_path: bool, **kwargs) -> torch.Tensor:
    """Logits; with ``reading_path`` a no-op hook on each hook_pattern forces the explicit-pattern path."""
    fused_calls = []
    original = Attention.forward_fused

    def counting(self, *args):
        fused_calls.append(self.layer)
        return original(self, *args)

    hooks = [(lambda name: name.endswith("hook_pattern"), lambda pattern, hook: None)] if reading_path else []
    with pytest.MonkeyPatch.context() as patch, torch.no_grad(), model.hooks(fwd_hooks=hooks):
        patch.setattr(Attention, "forward_fused", counting)
        logits = model(tokens, **kwargs)
    expected_calls = 0 if reading_path else model.cfg.n_layers
    assert len(fused_calls) == expected_calls, f"fast path ran in {len(fused_calls)} layers, expected {expected_calls}"
    return logits


def assert_paths_agree(fast, reading, dtype, what):
    tol = TOLERANCE[dtype]
    assert fast.abs().max() > 0.5, "logits are nearly zero: the comparison would be vacuous"
    torch.testing.assert_close(fast, reading, atol=tol, rtol=tol, msg=f"fast path != reading path ({what})")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("batch, pos", [(1, 1), (2, 7), (3, 16)])
def test_fast_path_equals_reading_path(variant, dtype, batch, pos):
    model = random_model(variant, dtype)
    tokens = torch.randint(0, BASE["d_vocab"], (batch, pos), generator=torch.Generator().manual_seed(batch * 100 + pos))
    assert_paths_agree(run(model, tokens, False), run(model, tokens, True), dtype, f"{variant}, {batch}x{pos}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_path_equals_reading_path_with_left_padding(variant):
    model = random_model(variant, torch.float64)
    tokens = torch.randint(0, BASE["d_vocab"], (3, 9), generator=torch.Generator().manual_seed(5))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, :4] = 0
    mask[2, :1] = 0
    fast = run(model, tokens, False, attention_mask=mask)
    reading = run(model, tokens, True, attention_mask=mask)
    real = mask.bool()  # padding positions' outputs are never read
    assert_paths_agree(fast[real], reading[real], torch.float64, f"{variant}, left padding")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_path_equals_reading_path_over_a_key_value_cache(variant):
    model = random_model(variant, torch.float64)
    tokens = torch.randint(0, BASE["d_vocab"], (2, 12), generator=torch.Generator().manual_seed(6))
    results = {}
    for reading_path in (False, True):
        cache = KeyValueCache.empty(model.cfg, batch=2, device="cpu")
        run(model, tokens[:, :8], reading_path, past_kv_cache=cache)
        results[reading_path] = torch.cat(
            [run(model, tokens[:, 8 + i : 9 + i], reading_path, past_kv_cache=cache) for i in range(4)], dim=1
        )
    assert_paths_agree(results[False], results[True], torch.float64, f"{variant}, key/value cache")
    full = run(model, tokens, False)[:, 8:]
    assert_paths_agree(results[False], full, torch.float64, f"{variant}, cached continuation vs the whole sequence")


def test_every_hook_the_fast_path_fires_sees_what_the_reading_path_fires():
    model = random_model("llama_gqa", torch.float64)
    tokens = torch.randint(0, BASE["d_vocab"], (2, 6), generator=torch.Generator().manual_seed(7))
    seen = {False: {}, True: {}}
    for reading_path in (False, True):
        store = seen[reading_path]
        record = [(lambda name: name.split(".")[-1] in ("hook_q", "hook_k", "hook_v", "hook_z", "hook_rot_q", "hook_rot_k"),
                   lambda act, hook, store=store: store.__setitem__(hook.name, act.clone()))]
        with model.hooks(fwd_hooks=record):
            run(model, tokens, reading_path)
    assert seen[False].keys() == seen[True].keys() and len(seen[False]) == 6 * BASE["n_layers"]
    for name, value in seen[False].items():
        torch.testing.assert_close(value, seen[True][name], atol=1e-10, rtol=1e-10, msg=f"{name} differs between the paths")
