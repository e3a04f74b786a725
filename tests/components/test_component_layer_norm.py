"""LayerNorm and LayerNormPre against torch.nn.functional.layer_norm and a hand-worked example."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from interp_transformer.components.factories import make_layer_norm
from interp_transformer.components.layer_norm import LayerNorm, LayerNormPre
from interp_transformer.components.rms_norm import RMSNorm, RMSNormPre

def _inputs(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # A large offset and uneven scale per position: catches a missing centring or a wrong reduction axis.
    return torch.randn(*shape, generator=g) * 3.0 + torch.randn(*shape[:-1], 1, generator=g) * 50.0


def test_hand_worked_example(cfg):
    norm = LayerNormPre(cfg.replace(d_model=4, n_heads=1, d_head=4, layer_norm_eps=1e-5))
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    # mean 2.5; centred [-1.5, -0.5, 0.5, 1.5]; biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
    scale = math.sqrt(1.25 + 1e-5)
    expected = torch.tensor([[[-1.5, -0.5, 0.5, 1.5]]]) / scale
    torch.testing.assert_close(norm(x), expected, msg="LayerNormPre should centre and divide by sqrt(biased var + eps)")


def test_layer_norm_pre_matches_functional(cfg):
    norm = LayerNormPre(cfg)
    x = _inputs(3, 7, cfg.d_model)
    expected = F.layer_norm(x, (cfg.d_model,), eps=cfg.layer_norm_eps)
    torch.testing.assert_close(norm(x), expected, msg="LayerNormPre differs from F.layer_norm without weights")
    assert not list(norm.parameters()), "LayerNormPre must have no learned parameters (they are folded downstream)"


def test_layer_norm_matches_functional_with_weights(cfg):
    norm = LayerNorm(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        norm.w.copy_(torch.randn(cfg.d_model, generator=g))
        norm.b.copy_(torch.randn(cfg.d_model, generator=g))
    x = _inputs(3, 7, cfg.d_model)
    expected = F.layer_norm(x, (cfg.d_model,), norm.w, norm.b, eps=cfg.layer_norm_eps)
    torch.testing.assert_close(norm(x), expected, msg="LayerNorm differs from F.layer_norm (weight/bias order or eps?)")


def test_layer_norm_defaults_to_identity_affine(cfg):
    norm = LayerNorm(cfg)
    assert torch.equal(norm.w, torch.ones(cfg.d_model)) and torch.equal(norm.b, torch.zeros(cfg.d_model))


def test_eps_is_used(cfg):
    eps = 0.5
    norm = LayerNormPre(cfg.replace(layer_norm_eps=eps))
    x = _inputs(2, 3, cfg.d_model)
    torch.testing.assert_close(norm(x), F.layer_norm(x, (cfg.d_model,), eps=eps), msg="cfg.layer_norm_eps is not applied")
    constant = torch.full((1, 2, cfg.d_model), 7.0)
    torch.testing.assert_close(norm(constant), torch.zeros_like(constant), msg="a constant vector should normalise to 0")


def _random_affine(norm: torch.nn.Module, seed: int = 1) -> None:
    """Weights far from 1 and biases far from 0, so a hook taken after them cannot pass for one taken before."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.w.copy_(torch.randn(norm.w.shape, generator=g) * 2.0 + 0.5)
        if hasattr(norm, "b"):
            norm.b.copy_(torch.randn(norm.b.shape, generator=g) * 2.0)


def _record(point, seen: dict, key: str) -> None:
    point.add(lambda a, hook: seen.__setitem__(key, a.detach().clone()))


def test_hooks_see_scale_and_normalized(cfg):
    norm = LayerNorm(cfg)
    _random_affine(norm)
    seen = {}
    _record(norm.hook_scale, seen, "scale")
    _record(norm.hook_normalized, seen, "normalized")
    x = _inputs(2, 5, cfg.d_model)
    out = norm(x)
    expected_scale = (x.var(-1, unbiased=False, keepdim=True) + cfg.layer_norm_eps).sqrt()
    assert seen["scale"].shape == (2, 5, 1), "hook_scale should keep a singleton d_model axis [batch pos 1]"
    torch.testing.assert_close(seen["scale"], expected_scale, msg="hook_scale should be sqrt(biased var + eps)")
    expected_normalized = (x - x.mean(-1, keepdim=True)) / expected_scale
    torch.testing.assert_close(
        seen["normalized"], expected_normalized,
        msg="hook_normalized should be taken before w and b (TransformerLens >= 3.0), not after",
    )


@pytest.mark.parametrize("hooked", ["normalized", "normalized_and_scale"])
def test_layer_norm_hook_normalized_is_before_weight_and_bias(cfg, hooked):
    norm = LayerNorm(cfg)
    _random_affine(norm)
    seen = {}
    _record(norm.hook_normalized, seen, "normalized")
    if hooked == "normalized_and_scale":  # the other code path: the scale hooked too
        _record(norm.hook_scale, seen, "scale")
    x = _inputs(3, 7, cfg.d_model)
    out = norm(x)
    normalized = seen["normalized"]
    torch.testing.assert_close(
        normalized.mean(-1), torch.zeros(3, 7), atol=1e-5, rtol=0,
        msg="hook_normalized should have zero mean per position (it is taken before the bias b)",
    )
    torch.testing.assert_close(
        normalized.pow(2).mean(-1).sqrt(), torch.ones(3, 7), atol=1e-4, rtol=0,
        msg="hook_normalized should have unit RMS per position (it is taken before the weight w)",
    )
    torch.testing.assert_close(out, normalized * norm.w + norm.b, msg="the output should be hook_normalized * w + b")
    expected = F.layer_norm(x, (cfg.d_model,), norm.w, norm.b, eps=cfg.layer_norm_eps)
    torch.testing.assert_close(out, expected, msg="hooking hook_normalized must not change LayerNorm's output")


def test_editing_hook_normalized_changes_layer_norm_output(cfg):
    norm = LayerNorm(cfg)
    _random_affine(norm)
    replacement = torch.randn(2, 5, cfg.d_model, generator=torch.Generator().manual_seed(7))
    norm.hook_normalized.add(lambda a, hook: replacement)
    out = norm(_inputs(2, 5, cfg.d_model))
    torch.testing.assert_close(
        out, replacement * norm.w + norm.b,
        msg="the value a hook returns at hook_normalized should be what w and b are applied to",
    )


def test_rms_norm_hook_normalized_is_before_weight(cfg):
    norm = RMSNorm(cfg)
    _random_affine(norm)
    seen = {}
    _record(norm.hook_normalized, seen, "normalized")
    x = _inputs(3, 7, cfg.d_model)
    out = norm(x)
    normalized = seen["normalized"]
    torch.testing.assert_close(
        normalized.pow(2).mean(-1).sqrt(), torch.ones(3, 7), atol=1e-4, rtol=0,
        msg="RMSNorm's hook_normalized should have unit RMS per position (taken before the weight w)",
    )
    rms = (x.pow(2).mean(-1, keepdim=True) + cfg.layer_norm_eps).sqrt()
    torch.testing.assert_close(out, x / rms * norm.w, msg="RMSNorm should be x / sqrt(mean(x^2) + eps) * w")
    torch.testing.assert_close(out, normalized * norm.w, msg="RMSNorm's output should be hook_normalized * w")


def test_editing_hook_normalized_changes_rms_norm_output(cfg):
    norm = RMSNorm(cfg)
    _random_affine(norm)
    replacement = torch.randn(2, 5, cfg.d_model, generator=torch.Generator().manual_seed(7))
    norm.hook_normalized.add(lambda a, hook: replacement)
    out = norm(_inputs(2, 5, cfg.d_model))
    torch.testing.assert_close(
        out, replacement * norm.w, msg="the value a hook returns at hook_normalized should be what w multiplies"
    )


@pytest.mark.parametrize("norm_class", [LayerNormPre, RMSNormPre])
def test_pre_variants_output_is_hook_normalized(cfg, norm_class):
    norm = norm_class(cfg)
    seen = {}
    _record(norm.hook_normalized, seen, "normalized")
    out = norm(_inputs(2, 5, cfg.d_model))
    torch.testing.assert_close(seen["normalized"], out, msg=f"{norm_class.__name__} has no weights: output == hook_normalized")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("norm_class", [LayerNorm, RMSNorm])
def test_reduced_precision_hooked_path_matches_float32(cfg, dtype, norm_class):
    norm = norm_class(cfg)
    _random_affine(norm)
    x = torch.randn(2, 5, cfg.d_model, generator=torch.Generator().manual_seed(3)) * 400.0
    expected = norm(x)  # float32 reference, same weights
    half = norm.to(dtype)
    seen = {}
    _record(half.hook_normalized, seen, "normalized")
    out = half(x.to(dtype))
    assert out.dtype == dtype and seen["normalized"].dtype == dtype, "hook_normalized and the output keep the model's dtype"
    assert torch.isfinite(out).all(), "half-precision norm overflowed: statistics must be computed in float32"
    torch.testing.assert_close(
        out.float(), expected, atol=0.05, rtol=0.02, msg="hooked half-precision norm should match float32 to rounding"
    )


def test_replacing_scale_changes_the_output(cfg):
    norm = LayerNormPre(cfg)
    norm.hook_scale.add(lambda a, hook: torch.ones_like(a))
    x = _inputs(2, 5, cfg.d_model)
    torch.testing.assert_close(norm(x), x - x.mean(-1, keepdim=True), msg="a hook on hook_scale should be used downstream")


def test_split_input_with_head_axis(cfg):
    norm = LayerNorm(cfg)
    with torch.no_grad():
        norm.w.copy_(torch.linspace(0.5, 2.0, cfg.d_model))
    x = _inputs(2, 5, cfg.n_heads, cfg.d_model)
    expected = F.layer_norm(x, (cfg.d_model,), norm.w, norm.b, eps=cfg.layer_norm_eps)
    torch.testing.assert_close(norm(x), expected, msg="LayerNorm should normalise the last axis of [batch pos head_index d_model]")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_is_computed_in_float32(cfg, dtype):
    norm = LayerNormPre(cfg.replace(dtype=dtype))
    # Values where float16 arithmetic would overflow (x**2 > 65504) if the statistics were computed in half.
    x = (torch.randn(2, 5, cfg.d_model, generator=torch.Generator().manual_seed(3)) * 400.0).to(dtype)
    out = norm(x)
    assert out.dtype == dtype, "the output should keep the model's dtype"
    expected = F.layer_norm(x.float(), (cfg.d_model,), eps=cfg.layer_norm_eps).to(dtype)
    assert torch.isfinite(out).all(), "half-precision LayerNorm overflowed: statistics must be computed in float32"
    torch.testing.assert_close(out, expected, msg="reduced-precision LayerNorm should match a float32 computation cast back")


def test_make_layer_norm_picks_the_configured_kind(cfg):
    assert type(make_layer_norm(cfg)) is LayerNorm
    assert type(make_layer_norm(cfg.replace(normalization_type="LNPre"))) is LayerNormPre
    assert make_layer_norm(cfg.replace(normalization_type=None)) is None


@pytest.mark.parametrize("hook_the_scale", [False, True])
@pytest.mark.parametrize("norm_class, centres", [(LayerNormPre, True), (RMSNormPre, False)])
def test_pre_variants_share_one_body_that_matches_the_formula(cfg, norm_class, centres, hook_the_scale):
    # Dense reference: (x - mean x if centring) / sqrt(mean(that^2) + eps); LayerNorm centres, RMSNorm does not.
    norm = norm_class(cfg)
    if hook_the_scale:  # leaves the fused kernel: the written-out body runs
        norm.hook_scale.add(lambda scale, hook: scale)
    x = _inputs(2, 5, cfg.d_model).double().float()
    centred = x - x.mean(-1, keepdim=True) if centres else x
    expected = centred / (centred.pow(2).mean(-1, keepdim=True) + cfg.layer_norm_eps).sqrt()
    torch.testing.assert_close(norm(x), expected, msg=f"{norm_class.__name__} (hooked scale: {hook_the_scale}) is not the formula")


def test_one_folding_rule_for_weight_processing_and_circuits():
    from interp_transformer.circuits import layer_norm_folding
    from interp_transformer.components import normalization
    from interp_transformer.loading import processing

    assert processing.fold_norm_into_weight is normalization.fold_norm_into_weight, "weight processing has its own copy of the rule"
    assert layer_norm_folding.fold_norm_into_weight is normalization.fold_norm_into_weight, "circuits have their own copy of the rule"
    weight, w = torch.randn(3, 2), torch.tensor([2.0, -1.0, 0.5])
    folded = normalization.fold_norm_into_weight(weight, w, centre=True)
    scaled = weight * w[:, None]
    torch.testing.assert_close(folded, scaled - scaled.mean(0, keepdim=True), msg="fold: diag(w) W, centred over d_model")
    torch.testing.assert_close(normalization.fold_norm_into_weight(weight, w, centre=False), scaled, msg="RMS: no centring")
