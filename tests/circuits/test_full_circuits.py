"""model.QK / model.OV, per-head circuits with the LayerNorm folded in, and full token/position circuits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from interp_transformer import HookedTransformer
from interp_transformer.circuits import (
    FactoredMatrix,
    ov_circuits,
    ov_unembed_circuit,
    positional_qk_circuit,
    qk_circuits,
    token_qk_circuit,
)


def model_with_trained_looking_layer_norms(**overrides) -> HookedTransformer:
    """Random weights, and LayerNorm weights/biases far from 1/0 so that folding them matters."""
    model = HookedTransformer(tiny_config(dtype=torch.float64, **overrides)).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith((".w", ".b")):
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) + (name.endswith(".w")))
    return model


def layer_norm_without_bias(model: HookedTransformer, x: torch.Tensor, layer_norm) -> torch.Tensor:
    """What the LayerNorm or RMSNorm module computes, minus its bias (circuits leave biases out)."""
    weight = getattr(layer_norm, "w", None)
    if model.cfg.normalization_type is None:
        return x
    if model.cfg.normalization_type in ("RMS", "RMSPre"):  # x / sqrt(mean(x^2) + eps) * w: no centring
        normed = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.layer_norm_eps).sqrt()
        return normed if weight is None else normed * weight
    return F.layer_norm(x, (model.cfg.d_model,), weight, None, model.cfg.layer_norm_eps)


def norm_scale(model: HookedTransformer, x: torch.Tensor) -> torch.Tensor:
    """The per-row scale the model's norm divides by: centred for LayerNorm, not for RMSNorm."""
    if model.cfg.normalization_type in ("RMS", "RMSPre"):
        return (x.pow(2).mean(-1, keepdim=True) + model.cfg.layer_norm_eps).sqrt()
    return (x.var(-1, correction=0, keepdim=True) + model.cfg.layer_norm_eps).sqrt()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12, msg=lambda m: f"{what}: {m}")


@pytest.fixture(params=["LN", "RMS"])
def model(request) -> HookedTransformer:
    return model_with_trained_looking_layer_norms(normalization_type=request.param)


def test_model_QK_and_OV_are_the_stored_weights_of_each_head(model):
    assert isinstance(model.QK, FactoredMatrix) and isinstance(model.OV, FactoredMatrix)
    cfg = model.cfg
    assert model.QK.shape == model.OV.shape == (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_model)
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            attn = model.blocks[layer].attn
            assert_close(model.QK[layer, head].AB, attn.W_Q[head] @ attn.W_K[head].T, f"QK of L{layer}H{head}")
            assert_close(model.OV[layer, head].AB, attn.W_V[head] @ attn.W_O[head], f"OV of L{layer}H{head}")


def test_head_circuits_without_folding_are_model_QK_and_OV(model):
    assert_close(qk_circuits(model, fold_layer_norm=False).AB, model.QK.AB, "qk_circuits(fold_layer_norm=False)")
    assert_close(ov_circuits(model, fold_layer_norm=False).AB, model.OV.AB, "ov_circuits(fold_layer_norm=False)")


def test_folded_circuits_act_on_raw_residual_vectors_like_the_layer_norm(model):
    """x QK y^T / (scale_x scale_y) is the head's (bias-free) score of raw residual vectors x and y."""
    residual = torch.randn(2, 5, model.cfg.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    x, y = residual
    scale = lambda v: norm_scale(model, v)  # noqa: E731
    qk, ov = qk_circuits(model), ov_circuits(model)
    for layer in range(model.cfg.n_layers):
        ln = model.blocks[layer].ln1
        attn = model.blocks[layer].attn
        for head in range(model.cfg.n_heads):
            expected = (layer_norm_without_bias(model, x, ln) @ attn.W_Q[head]) @ (layer_norm_without_bias(model, y, ln) @ attn.W_K[head]).T
            actual = (x / scale(x)) @ qk[layer, head].AB @ (y / scale(y)).T
            assert_close(actual, expected, f"folded QK of L{layer}H{head}")
            expected_ov = layer_norm_without_bias(model, x, ln) @ attn.W_V[head] @ attn.W_O[head]
            assert_close((x / scale(x)) @ ov[layer, head].AB, expected_ov, f"folded OV of L{layer}H{head}")


@pytest.mark.parametrize("normalization_type", ["LN", "LNPre", "RMS", "RMSPre", None])
def test_token_and_positional_qk_circuits_are_the_direct_path_scores(normalization_type):
    model = model_with_trained_looking_layer_norms(normalization_type=normalization_type)
    layer, head = 1, 2
    attn, ln = model.blocks[layer].attn, model.blocks[layer].ln1
    for circuit, embedding in ((token_qk_circuit, model.W_E), (positional_qk_circuit, model.W_pos)):
        normed = layer_norm_without_bias(model, embedding, ln)
        expected = (normed @ attn.W_Q[head]) @ (normed @ attn.W_K[head]).T
        assert_close(circuit(model, layer, head).AB, expected, f"{circuit.__name__} with {normalization_type}")
        raw = (embedding @ attn.W_Q[head]) @ (embedding @ attn.W_K[head]).T
        assert_close(circuit(model, layer, head, fold_layer_norm=False).AB, raw, f"{circuit.__name__}, fold_layer_norm=False")


@pytest.mark.parametrize("normalization_type", ["LN", "LNPre", "RMS", "RMSPre", None])
def test_ov_unembed_circuit_is_the_direct_path_logits(normalization_type):
    model = model_with_trained_looking_layer_norms(normalization_type=normalization_type)
    layer, head = 0, 3
    attn = model.blocks[layer].attn
    written = layer_norm_without_bias(model, model.W_E, model.blocks[layer].ln1) @ attn.W_V[head] @ attn.W_O[head]
    if normalization_type is not None:  # the final norm (centres, if LayerNorm, and) multiplies by w; its scale is left out
        if normalization_type.startswith("LN"):
            written = written - written.mean(-1, keepdim=True)
        written = written * getattr(model.ln_final, "w", torch.ones(1, dtype=written.dtype))
    assert_close(ov_unembed_circuit(model, layer, head).AB, written @ model.W_U, f"ov_unembed_circuit with {normalization_type}")
    raw = model.W_E @ attn.W_V[head] @ attn.W_O[head] @ model.W_U
    assert_close(ov_unembed_circuit(model, layer, head, fold_layer_norm=False).AB, raw, "ov_unembed_circuit, fold_layer_norm=False")


def test_all_heads_and_one_layer_stack_the_single_head_circuits(model):
    cfg = model.cfg
    for circuit, size in ((token_qk_circuit, cfg.d_vocab), (positional_qk_circuit, cfg.n_ctx), (ov_unembed_circuit, cfg.d_vocab)):
        every = circuit(model)
        assert every.shape == (cfg.n_layers, cfg.n_heads, size, size), f"{circuit.__name__}(model) shape"
        one_layer = circuit(model, 1)
        assert one_layer.shape == (cfg.n_heads, size, size), f"{circuit.__name__}(model, 1) shape"
        assert_close(every[1, 2].AB, circuit(model, 1, 2).AB, f"{circuit.__name__}: all heads vs one head")
        assert_close(one_layer[3].AB, circuit(model, 1, 3).AB, f"{circuit.__name__}: one layer vs one head")
        assert every.mdim == cfg.d_head, "full circuits must stay factored through d_head"


@pytest.mark.parametrize("layer, head, message", [(2, 0, r"layer 2 is out of range .* 0\.\.1"), (0, 4, r"head 4 is out of range .* 0\.\.3"), (-3, 0, "layer -3")])
def test_out_of_range_heads_are_refused(model, layer, head, message):
    for circuit in (token_qk_circuit, positional_qk_circuit, ov_unembed_circuit):
        with pytest.raises(ValueError, match=message):
            circuit(model, layer, head)


def test_head_indices_must_be_integers(model):
    with pytest.raises(TypeError, match="layer must be an int, got float"):
        token_qk_circuit(model, 1.0, 0)
    with pytest.raises(TypeError, match="head must be an int, got bool"):
        token_qk_circuit(model, 0, True)
    assert token_qk_circuit(model, torch.tensor(1), torch.tensor(2)).shape == (300, 300), "0-d integer tensors are valid indices"
