"""Feature-level activation and attribution patching, checked against the plain model with dense maths."""

from __future__ import annotations

import pytest
import torch

from interp_transformer.sae import SAEConfig, SparseAutoencoder, sae_hook_name, splice
from interp_transformer.sae import attribute_features, patch_features

from sae_dense_math import dense_decode, dense_features

HOOK = "blocks.1.hook_resid_pre"  # the case where patched runs must not restart from the spliced residual


@pytest.fixture
def sae(model):
    sae = SparseAutoencoder(SAEConfig(d_in=model.cfg.d_model, d_sae=40, hook_name=HOOK), seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(0.1)
    return sae.eval()


@pytest.fixture
def prompts(cfg):
    g = torch.Generator().manual_seed(3)
    clean = torch.randint(0, cfg.d_vocab, (2, 6), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = torch.randint(0, cfg.d_vocab, (2,), generator=g)
    return clean, corrupted


def metric(logits):
    return logits[:, -1, 5].mean() - logits[:, -1, 7].mean()


def per_prompt_metric(logits):
    return logits[:, -1, 5] - logits[:, -1, 7]


def dense_acts(model, sae, tokens):
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    return cache[HOOK], dense_features(cache[HOOK], sae.W_enc.detach(), sae.b_enc.detach())


def metric_with_activation_shift(model, tokens, shift, metric_fn=metric):
    """The plain model's metric when ``shift`` [batch pos d_model] is added at HOOK."""
    with torch.no_grad():
        return metric_fn(model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook: a + shift)]))


def test_patching_a_feature_equals_moving_the_activation_along_its_decoder_row(model, sae, prompts):
    clean, corrupted = prompts
    _, clean_acts = dense_acts(model, sae, clean)
    _, corrupted_acts = dense_acts(model, sae, corrupted)
    with splice(model, sae, include_error=True):
        _, cache = model.run_with_cache(clean, names_filter=sae_hook_name(sae))
    features = [0, 3, 17, 39]
    result = patch_features(model, sae, corrupted, cache, metric, features=features, progress=False)
    assert result.axes == ("pos", "feature") and tuple(result.shape) == (6, 4)
    for pos in range(6):
        for column, feature in enumerate(features):
            shift = torch.zeros(2, 6, model.cfg.d_model)
            delta = clean_acts[:, pos, feature] - corrupted_acts[:, pos, feature]
            shift[:, pos] = delta[:, None] * sae.W_dec[feature].detach()
            expected = metric_with_activation_shift(model, corrupted, shift)
            torch.testing.assert_close(result.values[pos, column], expected, atol=2e-5, rtol=0,
                                       msg=f"patching feature {feature} at position {pos} disagrees with the dense shift")


def test_patching_a_feature_at_all_positions_with_a_per_prompt_metric(model, sae, prompts):
    clean, corrupted = prompts
    _, clean_acts = dense_acts(model, sae, clean)
    _, corrupted_acts = dense_acts(model, sae, corrupted)
    with splice(model, sae, include_error=True):
        _, cache = model.run_with_cache(clean, names_filter=sae_hook_name(sae))
    result = patch_features(model, sae, corrupted, cache, per_prompt_metric, features=[5], per_position=False, progress=False)
    assert result.axes == ("feature", "batch") and tuple(result.shape) == (1, 2)
    shift = (clean_acts[..., 5] - corrupted_acts[..., 5])[..., None] * sae.W_dec[5].detach()
    torch.testing.assert_close(result.values[0], metric_with_activation_shift(model, corrupted, shift, per_prompt_metric), atol=2e-5, rtol=0)


def test_attribution_over_features_and_the_error_term_matches_the_dense_gradient(model, sae, prompts):
    clean, corrupted = prompts
    clean_x, clean_acts = dense_acts(model, sae, clean)
    corrupted_x, corrupted_acts = dense_acts(model, sae, corrupted)
    # The plain model's gradient of the metric with respect to the activation at HOOK, on the corrupted run.
    store = {}
    with model.hooks(fwd_hooks=[(HOOK, lambda a, hook: store.setdefault("x", a))]):
        value = metric(model(corrupted))
    (grad,) = torch.autograd.grad(value, [store["x"]])
    attribution = attribute_features(model, sae, clean, corrupted, metric)
    W_dec, b_dec = sae.W_dec.detach(), sae.b_dec.detach()
    expected = value.detach() + torch.einsum("bpf,bpd,fd->pf", clean_acts - corrupted_acts, grad, W_dec)
    torch.testing.assert_close(attribution.features(sae).values, expected, atol=1e-5, rtol=1e-4,
                               msg="feature attribution should be (clean - corrupted) * (grad . W_dec[f]) summed over the batch")
    clean_error = clean_x - dense_decode(clean_acts, W_dec, b_dec)
    corrupted_error = corrupted_x - dense_decode(corrupted_acts, W_dec, b_dec)
    expected_error = value.detach() + torch.einsum("bpd,bpd->p", clean_error - corrupted_error, grad)
    torch.testing.assert_close(attribution.error(sae).values, expected_error, atol=1e-5, rtol=1e-4)
    assert not any(p.has_hooks() for p in model.hook_dict.values()), "attribution must unsplice when done"


def test_feature_patching_bad_input_is_named(model, sae, prompts):
    clean, corrupted = prompts
    with pytest.raises(KeyError, match="run_with_cache"):
        patch_features(model, sae, corrupted, {}, metric)
    with splice(model, sae, include_error=True):
        _, cache = model.run_with_cache(clean, names_filter=sae_hook_name(sae))
    with pytest.raises(ValueError, match=r"d_sae=40"):
        patch_features(model, sae, corrupted, cache, metric, features=[40])
    with pytest.raises(ValueError, match="same batch size"):
        patch_features(model, sae, corrupted[:1], cache, metric)
    with pytest.raises(ValueError, match="differ in shape"):
        attribute_features(model, sae, clean, corrupted[:, :3], metric)


def test_patching_inside_a_splice_without_the_error_term_patches_the_reconstruction(model, sae, prompts):
    clean, corrupted = prompts
    _, clean_acts = dense_acts(model, sae, clean)
    _, corrupted_acts = dense_acts(model, sae, corrupted)
    W_dec, b_dec = sae.W_dec.detach(), sae.b_dec.detach()
    with splice(model, sae):  # the caller's splice (reconstruction only) is used as it is
        _, cache = model.run_with_cache(clean, names_filter=sae_hook_name(sae))
        result = patch_features(model, sae, corrupted, cache, metric, features=[2, 9], progress=False)
    for pos in range(6):
        for column, feature in enumerate([2, 9]):
            acts = corrupted_acts.clone()
            acts[:, pos, feature] = clean_acts[:, pos, feature]
            recons = dense_decode(acts, W_dec, b_dec)
            with torch.no_grad():
                expected = metric(model.run_with_hooks(corrupted, fwd_hooks=[(HOOK, lambda a, hook: recons)]))
            torch.testing.assert_close(result.values[pos, column], expected, atol=2e-5, rtol=0,
                                       msg="a patched run must apply the dictionary once, to the corrupted run's activation")
