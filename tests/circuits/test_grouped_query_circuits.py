"""Circuits of a grouped-query attention model pair each query head with the key/value head its forward pass uses.

The reference is a second, ordinary model whose key/value heads are the grouped model's repeated
(``repeat_interleave``) to one per query head: it computes the same forward pass, so every circuit
of the two must agree; one circuit is also checked against the dense product written out by hand.
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from interp_transformer import HookedTransformer
from interp_transformer.circuits import (
    all_composition_scores,
    copying_scores,
    ov_circuits,
    ov_unembed_circuit,
    positional_qk_circuit,
    qk_circuits,
    token_qk_circuit,
)

N_HEADS, N_KV_HEADS = 4, 2
GROUP = N_HEADS // N_KV_HEADS
KV_PARAMS = ("W_K", "W_V", "b_K", "b_V")


def grouped_and_dense_models(normalization_type: str) -> tuple[HookedTransformer, HookedTransformer]:
    """A random grouped-query model with norm weights far from 1, and the equivalent model with one kv head per query head."""
    overrides = dict(dtype=torch.float64, n_heads=N_HEADS, normalization_type=normalization_type)
    grouped = HookedTransformer(tiny_config(n_key_value_heads=N_KV_HEADS, **overrides)).eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in grouped.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.3 + name.endswith(".w"))
    dense = HookedTransformer(tiny_config(**overrides)).eval()
    state = {
        name: tensor.repeat_interleave(GROUP, dim=0) if name.rsplit(".", 1)[-1] in KV_PARAMS else tensor
        for name, tensor in grouped.state_dict().items()
    }
    dense.load_state_dict(state)
    return grouped, dense


@pytest.fixture(params=["LN", "RMS"])
def models(request) -> tuple[HookedTransformer, HookedTransformer]:
    return grouped_and_dense_models(request.param)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(
        actual, expected, rtol=1e-9, atol=1e-10,
        msg=lambda m: f"{what}: the grouped model pairs a query head with the wrong key/value head? {m}",
    )


def test_the_reference_model_computes_the_same_forward_pass(models):
    grouped, dense = models
    tokens = torch.randint(0, grouped.cfg.d_vocab, (2, 10), generator=torch.Generator().manual_seed(0))
    assert_close(grouped(tokens), dense(tokens), "logits of the grouped model and its expanded copy")


def test_stacked_views_and_QK_OV_have_one_entry_per_query_head(models):
    grouped, dense = models
    cfg = grouped.cfg
    for name in KV_PARAMS:
        assert_close(getattr(grouped, name), getattr(dense, name), f"model.{name}")
    assert grouped.QK.shape == (cfg.n_layers, N_HEADS, cfg.d_model, cfg.d_model)
    assert_close(grouped.QK.AB, dense.QK.AB, "model.QK")
    assert_close(grouped.OV.AB, dense.OV.AB, "model.OV")


@pytest.mark.parametrize("fold_layer_norm", [True, False])
def test_every_circuit_matches_the_expanded_model(models, fold_layer_norm):
    grouped, dense = models
    for circuits in (qk_circuits, ov_circuits):
        assert_close(circuits(grouped, fold_layer_norm).AB, circuits(dense, fold_layer_norm).AB, circuits.__name__)
    for circuit in (token_qk_circuit, positional_qk_circuit, ov_unembed_circuit):
        for layer, head in ((0, 1), (1, 3), (1, None), (None, None)):
            assert_close(
                circuit(grouped, layer, head, fold_layer_norm).AB,
                circuit(dense, layer, head, fold_layer_norm).AB,
                f"{circuit.__name__}(layer={layer}, head={head})",
            )
    assert_close(copying_scores(grouped, fold_layer_norm), copying_scores(dense, fold_layer_norm), "copying_scores")
    for mode in "QKV":
        assert_close(
            all_composition_scores(grouped, mode, fold_layer_norm),
            all_composition_scores(dense, mode, fold_layer_norm),
            f"{mode}-composition scores",
        )


def test_token_qk_circuit_of_head_1_uses_key_head_0_written_out():
    grouped, _ = grouped_and_dense_models("LN")
    attn = grouped.blocks[0].attn
    # Query head 1 shares key head 1 // GROUP = 0; without folding, the circuit is W_E W_Q[1] W_K[0]^T W_E^T.
    expected = grouped.W_E @ attn.W_Q[1] @ attn.W_K[0].T @ grouped.W_E.T
    assert_close(token_qk_circuit(grouped, 0, 1, fold_layer_norm=False).AB, expected, "token_qk_circuit(layer 0, head 1)")
