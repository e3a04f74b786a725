"""Attention-score decomposition: the per-component terms sum back to the head's real attention scores."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from interp_transformer import HookedTransformer
from interp_transformer.circuits import decompose_attention_scores
from interp_transformer.circuits.score_decomposition import residual_components


def model_with_every_bias(**overrides) -> HookedTransformer:
    """Random weights and nonzero biases everywhere, so each bias path is exercised."""
    model = HookedTransformer(tiny_config(n_layers=3, dtype=torch.float64, **overrides)).eval()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("b", "w", "b_Q", "b_K", "b_V", "b_O", "b_in", "b_out"):
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.5 + name.endswith(".w"))
    return model


def run_and_cache(model: HookedTransformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    cache: dict[str, torch.Tensor] = {}

    def store(activation, hook):
        cache[hook.name] = activation.detach().clone()

    with torch.no_grad(), model.hooks(fwd_hooks=[(lambda name: True, store)]):
        model(tokens)
    return cache


TOKENS = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"normalization_type": "LNPre"}, {"normalization_type": None}, {"attn_only": True}, {"use_split_qkv_input": True}],
    ids=["LN", "LNPre", "no-norm", "attn-only", "split-qkv"],
)
def test_contributions_sum_to_the_attention_scores(overrides):
    model = model_with_every_bias(**overrides)
    cache = run_and_cache(model, TOKENS)
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    for layer in range(3):
        head = (layer + 1) % 4
        decomposition = decompose_attention_scores(model, TOKENS, layer, head)
        n_components = 2 + layer * (4 + 1 + (0 if model.cfg.attn_only else 1)) + 1
        assert decomposition.contributions.shape == (n_components, n_components, 2, 9, 9)
        assert len(decomposition.components) == n_components
        expected = cache[f"blocks.{layer}.attn.hook_attn_scores"][:, head]
        total = decomposition.contributions.sum((0, 1))
        torch.testing.assert_close(
            total[:, causal], expected[:, causal], rtol=1e-9, atol=1e-9,
            msg=lambda m: f"L{layer}H{head}: components do not add up to the attention scores: {m}",
        )
        assert bool((decomposition.contributions[..., ~causal] == 0).all()), "future keys should get zero contributions"


def test_residual_components_sum_to_resid_pre():
    model = model_with_every_bias()
    cache = run_and_cache(model, TOKENS)
    components, labels = residual_components(model, cache, 2)
    assert labels == ["embed", "pos_embed", "L0H0", "L0H1", "L0H2", "L0H3", "L0 attn bias", "L0 mlp",
                      "L1H0", "L1H1", "L1H2", "L1H3", "L1 attn bias", "L1 mlp"]
    torch.testing.assert_close(components.sum(0), cache["blocks.2.hook_resid_pre"], rtol=1e-9, atol=1e-9)


def test_a_given_cache_gives_the_same_result_and_missing_entries_are_named():
    model = model_with_every_bias()
    cache = run_and_cache(model, TOKENS)
    direct = decompose_attention_scores(model, TOKENS, 2, 1)
    cached = decompose_attention_scores(model, TOKENS, 2, 1, cache=cache)
    torch.testing.assert_close(cached.contributions, direct.contributions)
    assert cached.components[-1] == "bias"
    del cache["blocks.1.attn.hook_z"]
    with pytest.raises(KeyError, match=r"blocks\.1\.attn\.hook_z"):
        decompose_attention_scores(model, TOKENS, 2, 1, cache=cache)


def test_mean_abs_summarises_each_pair():
    model = model_with_every_bias()
    decomposition = decompose_attention_scores(model, TOKENS, 1, 0)
    summary = decomposition.mean_abs()
    assert summary.shape == (len(decomposition.components),) * 2
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    expected = decomposition.contributions[2, 0][:, causal].abs().mean()
    assert summary[2, 0].item() == pytest.approx(expected.item())


def test_out_of_range_heads_are_refused():
    model = HookedTransformer(tiny_config())
    with pytest.raises(ValueError, match=r"layer 2 is out of range"):
        decompose_attention_scores(model, TOKENS, 2, 0)
    with pytest.raises(ValueError, match=r"head 7 is out of range"):
        decompose_attention_scores(model, TOKENS, 0, 7)
