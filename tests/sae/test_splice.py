"""Splicing dictionaries into a model: exactness with the error term, reconstruction, caching, ablation, gradients."""

from __future__ import annotations

import pytest
import torch

from interp_transformer.sae import SAEConfig, SparseAutoencoder, Transcoder, run_with_saes, sae_hook_name, splice

from sae_dense_math import dense_decode, dense_features, perfect_weights

HOOK = "blocks.1.hook_resid_pre"


def make_sae(model, hook=HOOK, d_sae=96, seed=0, **fields) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=model.cfg.d_model, d_sae=d_sae, hook_name=hook, **fields), seed=seed)
    with torch.no_grad():
        sae.b_enc.fill_(0.05)
    return sae.eval()


def cached(model, tokens, name):
    _, cache = model.run_with_cache(tokens, names_filter=name)
    return cache[name]


def test_with_the_error_term_the_spliced_forward_is_the_plain_forward(model, tokens):
    sae = make_sae(model)
    plain = model(tokens)
    with splice(model, sae, include_error=True):
        quiet = model(tokens)  # nothing hooked on the SAE: its output is the activation itself
        observed, cache = model.run_with_cache(tokens, names_filter=lambda name: "hook_sae" in name)
    torch.testing.assert_close(quiet, plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(observed, plain, rtol=0, atol=1e-5,
                               msg="reconstruction + error should give back the activation, so the logits are unchanged")
    x = cached(model, tokens, HOOK)
    acts = dense_features(x, sae.W_enc.detach(), sae.b_enc.detach())
    recons = dense_decode(acts, sae.W_dec.detach(), sae.b_dec.detach())
    torch.testing.assert_close(cache[f"{HOOK}.hook_sae_acts_post"], acts, msg="cached features differ from the dense encode")
    torch.testing.assert_close(cache[f"{HOOK}.hook_sae_recons"], recons)
    torch.testing.assert_close(cache[f"{HOOK}.hook_sae_error"], x - recons)


def test_without_the_error_term_the_reconstruction_replaces_the_activation(model, tokens):
    sae = make_sae(model)
    x = cached(model, tokens, HOOK)
    recons = dense_decode(dense_features(x, sae.W_enc.detach(), sae.b_enc.detach()), sae.W_dec.detach(), sae.b_dec.detach())
    expected = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook: recons)])
    spliced = run_with_saes(model, tokens, saes=[sae])
    torch.testing.assert_close(spliced, expected, msg="splicing should equal replacing the activation by the dense reconstruction")
    assert (spliced - model(tokens)).abs().max() > 1e-3, "a random SAE's reconstruction should change the logits"


def test_a_perfect_reconstruction_gives_the_clean_loss(model, tokens):
    sae = SparseAutoencoder(SAEConfig(d_in=model.cfg.d_model, d_sae=2 * model.cfg.d_model, hook_name=HOOK), init_weights=False)
    W_enc, W_dec = perfect_weights(model.cfg.d_model)
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.W_dec.copy_(W_dec)
    clean = model(tokens, return_type="loss")
    spliced = run_with_saes(model, tokens, saes=sae, return_type="loss")
    torch.testing.assert_close(spliced, clean, rtol=0, atol=1e-5, msg="relu(x) - relu(-x) = x, so the loss must not move")


def test_ablating_a_feature_moves_the_activation_by_its_decoder_direction(model, tokens):
    sae = make_sae(model)
    x = cached(model, tokens, HOOK)
    acts = dense_features(x, sae.W_enc.detach(), sae.b_enc.detach())
    feature = int(acts.sum((0, 1)).argmax())
    # Dense prediction: with the error term, zeroing feature f subtracts acts[..., f] * W_dec[f] from the activation.
    ablated_x = x - acts[..., feature, None] * sae.W_dec[feature].detach()
    expected = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook: ablated_x)])

    def ablate(activation, hook):
        activation[..., feature] = 0.0  # in place, as patching does

    with splice(model, sae, include_error=True):
        logits = model.run_with_hooks(tokens, fwd_hooks=[(sae_hook_name(sae), ablate)])
    torch.testing.assert_close(logits, expected, msg="ablating a feature should change the output as the dense math predicts")
    assert (logits - model(tokens)).abs().max() > 1e-4, "the chosen feature is active, so ablating it must matter"


def test_steering_adds_the_scaled_decoder_direction(model, tokens):
    sae = make_sae(model)
    x = cached(model, tokens, HOOK)
    expected = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook: x + 3.0 * sae.W_dec[7].detach())])

    def steer(activation, hook):
        return activation + 3.0 * torch.nn.functional.one_hot(torch.tensor(7), sae.cfg.d_sae).float()

    with splice(model, sae, include_error=True):
        logits = model.run_with_hooks(tokens, fwd_hooks=[(sae_hook_name(sae), steer)])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_gradients_are_exact_with_the_error_term(model, tokens):
    sae = make_sae(model)
    upstream = "blocks.0.hook_attn_out"
    store = {}

    def keep(activation, hook):
        store[hook.name] = activation

    def loss_and_grads(names):
        store.clear()
        with model.hooks(fwd_hooks=[(names, keep)]):
            loss = model(tokens, return_type="loss")
        return torch.autograd.grad(loss, [store[n] for n in names])

    (plain_grad,) = loss_and_grads([upstream])
    with splice(model, sae, include_error=True):
        upstream_grad, feature_grad, resid_grad = loss_and_grads([upstream, sae_hook_name(sae), HOOK])
    torch.testing.assert_close(upstream_grad, plain_grad, msg="the error term must keep upstream gradients exact")
    torch.testing.assert_close(feature_grad, resid_grad @ sae.W_dec.detach().T,
                               msg="a feature's gradient should be the output gradient projected on its decoder row")


def test_a_transcoder_reads_one_hook_and_replaces_another(model, tokens):
    cfg = SAEConfig(d_in=model.cfg.d_model, d_sae=80, d_out=model.cfg.d_model, hook_name="blocks.0.ln2.hook_normalized",
                    hook_name_out="blocks.0.hook_mlp_out")
    tc = Transcoder(cfg, seed=2)
    _, cache = model.run_with_cache(tokens, names_filter=[cfg.hook_name, cfg.hook_name_out])
    x, mlp_out = cache[cfg.hook_name], cache[cfg.hook_name_out]
    recons = dense_decode(dense_features(x, tc.W_enc.detach(), tc.b_enc.detach()), tc.W_dec.detach(), tc.b_dec.detach())
    expected = model.run_with_hooks(tokens, fwd_hooks=[(cfg.hook_name_out, lambda a, hook: recons)])
    assert sae_hook_name(tc) == "blocks.0.hook_mlp_out.hook_sae_acts_post", "SAELens names a transcoder's hooks at its output"
    with splice(model, tc):
        torch.testing.assert_close(model(tokens), expected)
    with splice(model, tc, include_error=True):
        logits, spliced = model.run_with_cache(tokens, names_filter=sae_hook_name(tc, "hook_sae_error"))
    torch.testing.assert_close(spliced[sae_hook_name(tc, "hook_sae_error")], mlp_out - recons, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, model(tokens), atol=1e-5, rtol=0)


def test_a_hook_z_sae_reads_heads_flattened(model, tokens):
    hook = "blocks.0.attn.hook_z"
    sae = make_sae(model, hook=hook, reshape_activations="hook_z")  # d_in = n_heads * d_head = d_model here
    z = cached(model, tokens, hook)
    flat = z.flatten(-2)
    recons = dense_decode(dense_features(flat, sae.W_enc.detach(), sae.b_enc.detach()), sae.W_dec.detach(), sae.b_dec.detach())
    expected = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: recons.reshape(z.shape))])
    torch.testing.assert_close(run_with_saes(model, tokens, saes=sae), expected)


def test_splice_is_removed_on_exit_survives_reset_hooks_and_cleans_up_on_error(model, tokens):
    sae = make_sae(model)
    plain, names = model(tokens), model.hook_points()
    with splice(model, sae):
        spliced = model(tokens)
        model.reset_hooks()
        torch.testing.assert_close(model(tokens), spliced, msg="reset_hooks inside the block must not undo the splice")
    torch.testing.assert_close(model(tokens), plain)
    with pytest.raises(RuntimeError, match="inside"):
        with splice(model, sae):
            raise RuntimeError("inside")
    assert model.hook_points() == names and not any(p.has_hooks() for p in model.hook_dict.values())
    assert sae.hook_points()[0] == "hook_sae_input" and sae.hook_sae_input.name == "hook_sae_input"


def test_two_dictionaries_splice_together(model, tokens):
    first, second = make_sae(model, "blocks.0.hook_resid_post", seed=1), make_sae(model, "blocks.1.hook_resid_post", seed=2)
    with splice(model, first, second, include_error=True):
        logits, cache = model.run_with_cache(tokens, names_filter=[sae_hook_name(first), sae_hook_name(second)])
    assert set(cache.keys()) == {sae_hook_name(first), sae_hook_name(second)}
    torch.testing.assert_close(logits, model(tokens), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- bad input
def test_a_width_mismatch_names_the_hook_and_hooks_that_fit(model):
    sae = SparseAutoencoder(SAEConfig(d_in=model.cfg.d_mlp, d_sae=16, hook_name=HOOK))
    with pytest.raises(ValueError, match=r"d_in=64.*width 32.*blocks.0.mlp.hook_pre"):
        with splice(model, sae):
            pass


def test_an_unknown_hook_name_suggests_close_matches(model):
    sae = make_sae(model, hook="blocks.1.hook_resid_pr")
    with pytest.raises(KeyError, match=r"blocks.1.hook_resid_pr.*blocks.1.hook_resid_pre.*cfg.hook_name"):
        with splice(model, sae):
            pass


def test_other_misuse_is_refused(model):
    sae = make_sae(model)
    with pytest.raises(ValueError, match="two dictionaries replace"):
        with splice(model, sae, make_sae(model)):
            pass
    with pytest.raises(ValueError, match="passed twice"):
        with splice(model, sae, sae):
            pass
    with pytest.raises(ValueError, match="no hook_name"):
        with splice(model, SparseAutoencoder(SAEConfig(d_in=32, d_sae=8))):
            pass
    with pytest.raises(TypeError, match="SparseAutoencoder or Transcoder"):
        with splice(model, "sae"):
            pass
    assert not any(p.has_hooks() for p in model.hook_dict.values())
