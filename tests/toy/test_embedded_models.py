"""The shipped embedded models: they load offline with their tokenizers and their model cards' claims hold on fresh data."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.loading import available_models
from interp_transformer.loading.integrity import CorruptWeightsError
from interp_transformer.toy import embedded_models, induction, ioi, modadd
from interp_transformer.toy.recipes import all_recipes

NAMES = ("attn-only-2l-induction", "ioi-mini", "modadd-1l")
FRESH_SEED = 2024  # differs from every recipe's eval_seed and training seed


@pytest.fixture(scope="module")
def loaded() -> dict[str, HookedTransformer]:
    return {name: HookedTransformer.from_pretrained(name) for name in NAMES}


def test_every_recipe_is_shipped_and_listed():
    assert set(all_recipes()) == set(NAMES)
    assert set(embedded_models()) == set(NAMES), "a recipe's weights are missing from toy/weights: retrain it"
    assert available_models()["embedded"] == sorted(NAMES)


def test_shipped_weights_are_small():
    total = sum(f.stat().st_size for path in embedded_models().values() for f in path.iterdir())
    assert total < 10 * 2**20, f"embedded models take {total / 2**20:.1f} MB, over the ~10 MB budget"


@pytest.mark.parametrize("name", NAMES)
def test_loads_with_tokenizer_and_card(loaded, name):
    model = loaded[name]
    assert model.tokenizer is not None, "the embedded model should ship its tokenizer"
    assert model.cfg == all_recipes()[name].config.replace(dtype=model.cfg.dtype), "shipped config drifted from its recipe"
    card = (embedded_models()[name] / "MODEL_CARD.md").read_text()
    for needed in ("## Data", "## Training", "## Results", f"python -m interp_transformer.toy.train {name}", " s on "):
        assert needed in card, f"model card of {name} lacks {needed!r}"


def test_induction_model_has_prev_token_and_induction_heads(loaded):
    metrics = induction.evaluate(loaded["attn-only-2l-induction"], torch.Generator().manual_seed(FRESH_SEED))
    assert metrics["induction_score"] > 0.7, f"layer-1 induction score too low: {metrics}"
    # L0H2 is the clearest previous-token head (card: 0.653 ± 0.001); L0H1 and L0H3 share the role in part
    assert metrics["prev_token_score"] > 0.6, f"layer-0 previous-token score too low: {metrics}"
    assert metrics["loss_second_half"] < 0.25 * metrics["loss_first_half"], f"repeated half not predicted: {metrics}"


def test_induction_model_completes_a_repeated_word_sequence(loaded):
    model = loaded["attn-only-2l-induction"]
    prompt = "river castle garden morning silver horse bridge quiet " * 2
    tokens = model.to_tokens(prompt)
    predicted = model(tokens)[0, :-1].argmax(-1)
    second_half = slice(9, tokens.shape[1] - 1)
    accuracy = (predicted[second_half] == tokens[0, 1:][second_half]).float().mean().item()
    assert accuracy > 0.8, f"the second copy should be predicted from the first; accuracy {accuracy:.2f}"


def test_ioi_model_generalises_to_held_out_names(loaded):
    metrics = ioi.evaluate(loaded["ioi-mini"], torch.Generator().manual_seed(FRESH_SEED))
    # Sanity floors far below the card (held-out accuracy 0.731 ± 0.019, logit diff 1.09 ± 0.13; training names
    # 1 ± 0, 6.98 ± 0.09); test_model_cards.py checks the stated values against their spread.
    assert metrics["heldout_accuracy"] > 0.6, f"held-out IOI accuracy too low: {metrics}"
    assert metrics["heldout_logit_diff"] > 0.7, f"held-out IO-S logit difference too small: {metrics}"
    assert metrics["train_names_accuracy"] > 0.95, f"IOI accuracy on training names too low: {metrics}"
    assert metrics["train_names_logit_diff"] > 4.0, f"IOI logit difference on training names too small: {metrics}"


def test_ioi_model_answers_the_canonical_prompt(loaded):
    model = loaded["ioi-mini"]
    logits = model("When Mary and John went to the store, John gave a drink to")[0, -1]
    assert logits[model.to_single_token(" Mary")] > logits[model.to_single_token(" John")]


def test_modadd_model_groks_and_its_training_record_says_so(loaded):
    """The shipped model generalises (>= 99.9% on held-out pairs) and training.json's last record matches the weights."""
    model = loaded["modadd-1l"]
    metrics = modadd.evaluate(model)
    assert metrics["test_accuracy"] >= 0.999, f"modular addition did not grok: {metrics}"
    recorded = json.loads((embedded_models()["modadd-1l"] / "training.json").read_text())
    for key, value in metrics.items():
        assert abs(value - recorded["metrics"][key]) < 1e-5, f"training.json's {key} is not the shipped weights': {metrics}"
    history = recorded["history"]
    grok = next(r["step"] for r in history if r["test_accuracy"] >= 0.999)
    memorised = next(r["step"] for r in history if r["train_accuracy"] >= 0.999)
    assert memorised < grok, f"the curve should show memorising (step {memorised}) before grokking (step {grok})"


def test_modadd_fast_training_forward_is_the_model_forward(loaded):
    """Training uses last_position_logits; it must equal the full forward's last position (trained and fresh weights)."""
    tokens = modadd.all_pairs()[:500, :3]
    for model in (loaded["modadd-1l"], HookedTransformer(modadd.CONFIG)):
        with torch.no_grad():
            full, fast = model(tokens)[:, -1], modadd.last_position_logits(model, tokens)
        assert torch.allclose(fast, full, atol=1e-4, rtol=1e-4), f"fast path differs by {(fast - full).abs().max()}"


def test_modadd_answers_fresh_sums(loaded):
    model = loaded["modadd-1l"]
    generator = torch.Generator().manual_seed(FRESH_SEED)
    a, b = torch.randint(0, modadd.P, (2, 200), generator=generator)
    tokens = torch.stack([a, b, torch.full_like(a, modadd.P)], dim=1) + modadd.N_SPECIAL
    tokens[:, 2] = modadd.EQUALS_ID
    predicted = model(tokens)[:, -1, modadd.N_SPECIAL : modadd.N_SPECIAL + modadd.P].argmax(-1)
    assert (predicted == (a + b) % modadd.P).float().mean() > 0.99


def test_fourier_basis_is_orthonormal():
    basis = modadd.fourier_basis(modadd.P)
    assert torch.allclose(basis @ basis.T, torch.eye(modadd.P, dtype=basis.dtype), atol=1e-10)


def test_corrupted_embedded_weights_fail_clearly(tmp_path):
    copy = tmp_path / "attn-only-2l-induction"
    shutil.copytree(embedded_models()["attn-only-2l-induction"], copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match="sha256"):
        HookedTransformer.from_pretrained(copy)


def test_unknown_embedded_name_lists_the_available_ones():
    with pytest.raises(ValueError) as error:
        HookedTransformer.from_pretrained("attn-only-3l-induction")
    for name in NAMES:
        assert name in str(error.value)
