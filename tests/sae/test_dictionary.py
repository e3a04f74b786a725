"""SparseAutoencoder and Transcoder against written-out maths: every architecture, the pre-encoder bias, norms."""

from __future__ import annotations

import pytest
import torch

from interp_transformer.sae import SAEConfig, SparseAutoencoder, Transcoder

from sae_dense_math import dense_decode, dense_features

D_IN, D_SAE = 16, 64


def random_sae(architecture="standard", seed=0, **cfg) -> SparseAutoencoder:
    if architecture in ("topk", "batchtopk"):
        cfg.setdefault("k", 5)
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, **cfg), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.1)
        sae.b_dec.copy_(torch.randn(D_IN, generator=g) * 0.1)
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.rand(D_SAE, generator=g) * 0.2)
    return sae


def inputs(seed=1, shape=(3, 7)):
    return torch.randn(*shape, D_IN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu", "batchtopk"])
@pytest.mark.parametrize("apply_b_dec_to_input", [False, True])
def test_encode_and_decode_match_the_written_out_maths(architecture, apply_b_dec_to_input):
    sae = random_sae(architecture, apply_b_dec_to_input=apply_b_dec_to_input).eval()
    x = inputs()
    expected = dense_features(
        x, sae.W_enc.detach(), sae.b_enc.detach(), sae.b_dec.detach() if apply_b_dec_to_input else None,
        architecture, sae.cfg.k, getattr(sae, "threshold", None),
    )
    with torch.no_grad():
        acts = sae.encode(x)
        recons = sae(x)
    torch.testing.assert_close(acts, expected, msg=f"{architecture} features differ from the dense formula")
    torch.testing.assert_close(recons, dense_decode(expected, sae.W_dec.detach(), sae.b_dec.detach()),
                               msg="reconstruction should be features @ W_dec + b_dec")
    if architecture == "topk":
        assert ((acts > 0).sum(-1) <= 5).all(), "TopK must keep at most k features per row"
    if architecture == "batchtopk":
        assert (acts > 0).sum() <= 5 * 21, "BatchTopK must keep at most k * rows features in the batch"
        assert (acts > 0).sum(-1).max() > 5 or (acts > 0).sum(-1).min() < 5, "BatchTopK should vary per row"


def test_topk_keeps_the_k_largest_by_a_hand_worked_example():
    sae = SparseAutoencoder(SAEConfig(d_in=2, d_sae=4, architecture="topk", k=2), init_weights=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.0, 1.0, 0.0, 3.0]]))
    # pre-activations for x = (1, 1): (1, 1, 2, 2) -> keep 2 and 2; for x = (-1, 0.5): (-1, .5, -2, 2.5) -> keep 2.5 and .5
    acts = sae.encode(torch.tensor([[1.0, 1.0], [-1.0, 0.5]]))
    torch.testing.assert_close(acts, torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.5, 0.0, 2.5]]))


def test_jumprelu_zeroes_features_at_or_below_their_threshold():
    sae = SparseAutoencoder(SAEConfig(d_in=1, d_sae=3, architecture="jumprelu"), init_weights=False)
    with torch.no_grad():
        sae.W_enc.fill_(1.0)
        sae.threshold.copy_(torch.tensor([0.5, 1.0, 1.5]))
    acts = sae.encode(torch.tensor([[1.0]]))
    torch.testing.assert_close(acts, torch.tensor([[1.0, 0.0, 0.0]]), msg="x > threshold passes; x <= threshold is zero")


def test_hook_points_see_the_intermediate_values():
    sae = random_sae("standard", apply_b_dec_to_input=True)
    x = inputs()
    seen = {}

    def record(activation, hook):
        seen[hook.name] = activation.detach().clone()

    with torch.no_grad():
        out = sae.run_with_hooks(x, fwd_hooks=[(lambda name: True, record)])
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(seen["hook_sae_input"], x, msg="hook_sae_input sees the raw input (before b_dec), as in SAELens")
    torch.testing.assert_close(seen["hook_sae_acts_pre"], pre.detach())
    torch.testing.assert_close(seen["hook_sae_acts_post"], pre.detach().relu())
    torch.testing.assert_close(seen["hook_sae_recons"], out)


def test_decoder_norm_constraint_and_folding_keep_reconstructions():
    sae = random_sae("jumprelu")
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 3.0, D_SAE)[:, None])
    x = inputs()
    before = sae(x).detach()
    sae.fold_W_dec_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE), msg="fold_W_dec_norm should leave unit rows")
    torch.testing.assert_close(sae(x).detach(), before, msg="folding decoder norms must not change the reconstruction")
    with torch.no_grad():
        sae.W_dec.mul_(2.0)
    sae.set_decoder_norm_to_unit_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE))


def test_transcoder_maps_one_width_to_another():
    cfg = SAEConfig(d_in=16, d_sae=32, d_out=24, hook_name="blocks.0.ln2.hook_normalized", hook_name_out="blocks.0.hook_mlp_out")
    tc = Transcoder(cfg, seed=0)
    assert tuple(tc.W_dec.shape) == (32, 24) and tuple(tc.b_dec.shape) == (24,)
    x = inputs()
    expected = dense_decode(dense_features(x, tc.W_enc.detach(), tc.b_enc.detach()), tc.W_dec.detach(), tc.b_dec.detach())
    torch.testing.assert_close(tc(x).detach(), expected)
    with pytest.raises(ValueError, match="hook_name_out"):
        Transcoder(SAEConfig(d_in=16, d_sae=32, hook_name="blocks.0.ln2.hook_normalized"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(architecture="gated"), "architecture 'gated' is not supported"),
        (dict(architecture="topk"), "needs k"),
        (dict(architecture="topk", k=65), "larger than d_sae"),
        (dict(k=4), "only applies"),
        (dict(d_sae=0), "d_sae must be a positive integer"),
        (dict(dtype="int8"), "dtype 'int8' is not supported"),
        (dict(d_out=8, apply_b_dec_to_input=True), "apply_b_dec_to_input"),
    ],
)
def test_config_refuses_bad_fields_by_name(fields, message):
    values = dict(d_in=D_IN, d_sae=D_SAE) | fields
    with pytest.raises((ValueError, TypeError), match=message):
        SAEConfig(**values)


def test_wrong_input_width_or_dtype_is_a_clear_error():
    sae = random_sae(hook_name="blocks.0.hook_resid_pre")
    with pytest.raises(ValueError, match=r"d_in=16.*shape \(2, 8\).*blocks.0.hook_resid_pre"):
        sae(torch.randn(2, 8))
    with pytest.raises(TypeError, match="float64"):
        sae(torch.randn(2, D_IN, dtype=torch.float64))
