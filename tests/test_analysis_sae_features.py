"""analyses/sae_features.py reproduces the shipped dictionaries' cards and finds the cards' features again."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from interp_transformer.sae import embedded_dictionaries
from interp_transformer.toy.evaluation import parse_results_table

ANALYSES = Path(__file__).parent.parent / "analyses"
CARD_FIGURES = ("explained_variance", "l0", "dead_fraction", "clean_loss", "spliced_loss", "mean_ablated_loss", "loss_recovered")


def run_script(name: str, out: Path, *extra: str) -> dict:
    spec = importlib.util.spec_from_file_location(name, ANALYSES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--out", str(out), *extra])


@pytest.mark.slow
def test_sae_features_reproduces_every_card(tmp_path, capsys):
    result = run_script("sae_features", tmp_path, "--seeds", "2")
    printed = capsys.readouterr().out
    for name, folder in embedded_dictionaries().items():
        card = parse_results_table((folder / "SAE_CARD.md").read_text())
        assert result[f"{name}/model_matches_training"], f"{name} was trained on other model weights than the shipped ones"
        for figure, (mean, std) in card.items():
            assert f"{name}/{figure}" in result and figure in printed, f"the script does not reproduce the card's {figure} for {name}"
            # 2 of the card's 5 seeds: their mean lies within the card's spread (plus rounding)
            assert abs(result[f"{name}/{figure}"] - mean) <= 3 * std + 1e-3 * max(1, abs(mean)), (
                f"{name}: {figure} = {result[f'{name}/{figure}']} reproduced, the card states {mean} ± {std}"
            )
        assert set(CARD_FIGURES) <= set(card), f"{name}'s card lacks some of {CARD_FIGURES}"
        assert card["explained_variance"][0] >= 0.9 and card["l0"][0] <= 32, f"{name} misses FVE >= 0.9 at L0 <= 32"
        assert card["spliced_loss"][0] < card["mean_ablated_loss"][0], f"{name} spliced in is worse than mean-ablating the hook"


@pytest.mark.slow
def test_sae_features_finds_the_cards_features_again_and_draws_them(tmp_path):
    result = run_script("sae_features", tmp_path, "--seeds", "2")
    training = json.loads((embedded_dictionaries()["attn-only-2l-induction-resid-sae"] / "training.json").read_text())
    for label, feature in training["features"].items():
        key = f"attn-only-2l-induction-resid-sae/{label}_feature"
        assert result[key] == feature == result[f"{key}_in_card"], f"the search for {label} now finds {result[key]}, the card names {feature}"
        page = (tmp_path / f"attn-only-2l-induction-resid-sae_{label}_feature.html").read_text()
        assert f"feature {feature} ({label})" in page, f"the {label} dashboard should name feature {feature}"
    assert (tmp_path / "card_figures.csv").exists()
