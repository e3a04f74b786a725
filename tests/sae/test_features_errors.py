"""Bad input to feature analysis: each gets an error naming the value and what to change, before any work is done."""

from __future__ import annotations

import pytest
import torch
from feature_fixtures import corpus_tokens, quantized_model, quantized_sae

from interp_transformer.sae import SAEConfig, SparseAutoencoder
from interp_transformer.sae.features import top_activating_contexts, top_activating_contexts_in_corpus
from interp_transformer.sae.logit_effects import feature_logit_weights, logit_effects
from interp_transformer.store import cache_dataset

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return quantized_model()


@pytest.fixture(scope="module")
def store_path(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "acts"
    cache_dataset(model, corpus_tokens()[:4], [HOOK], out, progress=False)
    return out


@pytest.fixture(scope="module")
def sae(model):
    return quantized_sae(model.cfg.d_model, HOOK)


@pytest.mark.parametrize(
    ("features", "error", "message"),
    [
        ([0, 12], ValueError, r"features \[12\] are out of range for a dictionary with d_sae=12; use indices in \[0, 11\]"),
        ([-1], ValueError, r"features \[-1\] are out of range"),
        ([3, 3], ValueError, r"lists some indices twice \(\[3\]\)"),
        ([], ValueError, "features is empty"),
        (5, TypeError, "a list of feature indices"),
        ([1.0], TypeError, "features must hold ints"),
        ([True], TypeError, "features must hold ints"),
        (torch.tensor([0.5]), TypeError, "integer tensor"),
    ],
)
def test_bad_feature_indices(store_path, model, sae, features, error, message) -> None:
    with pytest.raises(error, match=message):
        top_activating_contexts(store_path, sae, features=features, progress=False)
    with pytest.raises(error, match=message):
        logit_effects(model, sae, features=features)


def test_a_store_without_the_dictionarys_hook_names_what_it_holds(store_path, model) -> None:
    other = quantized_sae(model.cfg.d_model, "blocks.1.hook_resid_post")
    with pytest.raises(KeyError, match=r"does not hold 'blocks.1.hook_resid_post' \(it holds \['blocks.0.hook_resid_post'\]\); cache it with"):
        top_activating_contexts(store_path, other, progress=False)


def test_a_width_mismatch_names_both_widths(store_path, model) -> None:
    narrow = SparseAutoencoder(SAEConfig(d_in=16, d_sae=4, hook_name=HOOK), seed=0)
    message = r"'blocks.0.hook_resid_post' in the store at .* has width 32 \(per-position shape \[32\]\) but the dictionary reads d_in=16"
    with pytest.raises(ValueError, match=message):
        top_activating_contexts(store_path, narrow, progress=False)
    with pytest.raises(ValueError, match="in the model has width 32"):
        top_activating_contexts_in_corpus(model, corpus_tokens()[:2], narrow, progress=False)
    with pytest.raises(ValueError, match=r"writes 16 values per position \(d_out\) but 'blocks.0.hook_resid_post' has shape \[32\]"):
        logit_effects(model, narrow)


def test_a_dictionary_without_a_hook_name_asks_for_hook(store_path, model) -> None:
    nameless = SparseAutoencoder(SAEConfig(d_in=32, d_sae=4), seed=0)
    with pytest.raises(ValueError, match="pass the hook it reads as hook="):
        top_activating_contexts(store_path, nameless, progress=False)
    assert top_activating_contexts(store_path, nameless, hook=HOOK, k=2, progress=False).hook_name == HOOK
    with pytest.raises(ValueError, match="where it writes is unknown"):
        feature_logit_weights(model, nameless)


def test_batchtopk_is_refused_because_a_tokens_activation_depends_on_the_batch(store_path) -> None:
    batchtopk = SparseAutoencoder(SAEConfig(d_in=32, d_sae=8, architecture="batchtopk", k=2, hook_name=HOOK), seed=0)
    with pytest.raises(ValueError, match="depend on the other rows of the batch.*loads as a JumpReLU"):
        top_activating_contexts(store_path, batchtopk, progress=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0}, "k must be a positive int, got 0"),
        ({"bins": True}, "bins must be a positive int, got True"),
        ({"batch_size": -2}, "batch_size must be a positive int"),
        ({"window": (3,)}, r"window must be \(before, after\)"),
        ({"window": (-1, 2)}, r"window must be \(before, after\)"),
        ({"min_activation": -0.5}, "min_activation must be a finite number >= 0"),
        ({"min_activation": float("nan")}, "min_activation must be a finite number >= 0"),
    ],
)
def test_bad_options(store_path, sae, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        top_activating_contexts(store_path, sae, progress=False, **options)


def test_bad_sources(tmp_path, model, sae) -> None:
    with pytest.raises(FileNotFoundError, match="no activation store at"):
        top_activating_contexts(tmp_path / "nothing", sae, progress=False)
    with pytest.raises(TypeError, match="store must be an ActivationStore or the path of one, got dict"):
        top_activating_contexts({}, sae, progress=False)
    with pytest.raises(TypeError, match=r"sae must be a SparseAutoencoder or Transcoder, got Linear"):
        top_activating_contexts(tmp_path, torch.nn.Linear(2, 2), progress=False)
    with pytest.raises(TypeError, match=r"tokens must be a non-empty \[n_sequences pos\] integer tensor, got shape \(5,\)"):
        top_activating_contexts_in_corpus(model, torch.arange(5), sae, progress=False)
    with pytest.raises(KeyError, match="the model has no hook 'blocks.7.hook_resid_post'"):
        top_activating_contexts_in_corpus(model, corpus_tokens()[:2], quantized_sae(32, "blocks.7.hook_resid_post"), progress=False)


def test_logit_effects_bad_input(model, sae) -> None:
    with pytest.raises(ValueError, match=r"k=21 is larger than the vocabulary \(d_vocab_out=20\)"):
        logit_effects(model, sae, k=21)
    with pytest.raises(TypeError, match="through_final_norm must be True or False"):
        logit_effects(model, sae, through_final_norm="yes")
    with pytest.raises(KeyError, match="the model has no hook 'blocks.9.hook_mlp_out'"):
        logit_effects(model, quantized_sae(32, "blocks.9.hook_mlp_out"))
    pattern = SparseAutoencoder(SAEConfig(d_in=32, d_sae=4, hook_name="blocks.0.ln1.hook_normalized"), seed=0)
    with pytest.raises(ValueError, match=r"need a dictionary that writes into the residual stream .* this one writes 'blocks.0.ln1.hook_normalized'"):
        logit_effects(model, pattern)


def test_a_feature_missing_from_a_result(store_path, model, sae) -> None:
    found = top_activating_contexts(store_path, sae, features=[1, 2], k=2, progress=False)
    with pytest.raises(KeyError, match=r"feature 5 was not analysed; this result holds \[1, 2\]"):
        found.contexts(5)
    with pytest.raises(KeyError, match=r"feature 0 has no logit effects here; this result holds \[4\]"):
        logit_effects(model, sae, features=[4], k=2).row(0)


def test_nan_activations_stop_the_pass_and_leave_no_hooks_on_the_model(store_path, model) -> None:
    broken = quantized_sae(model.cfg.d_model, HOOK)
    with torch.no_grad():
        broken.b_enc[2] = float("nan")
    with pytest.raises(ValueError, match=r"activations on sequences 0..1 hold NaN"):
        top_activating_contexts(store_path, broken, batch_size=2, progress=False)
    kept = None
    try:  # keep the exception (and so its traceback's frames) alive, as a debugger or notebook does
        top_activating_contexts_in_corpus(model, corpus_tokens()[:4], broken, batch_size=2, progress=False)
    except ValueError as error:
        kept = error
    hooked = [name for name, point in model.hook_dict.items() if point.has_hooks()]
    assert hooked == [], f"the failed pass left hooks on {hooked}"
    assert kept is not None and "activations on sequences 0..1 hold NaN" in str(kept), "NaN activations must raise"
