"""The research scripts in analyses/ run on the embedded models and find what they claim to find."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ANALYSES = Path(__file__).parent.parent / "analyses"


def run_script(name: str, out: Path) -> dict:
    spec = importlib.util.spec_from_file_location(name, ANALYSES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--out", str(out)])


def scores_by_head(text: str) -> dict[str, float]:
    """``"L1H0 0.96, L1H1 0.96"`` -> ``{"L1H0": 0.96, "L1H1": 0.96}``."""
    return {head: float(score) for head, score in (item.split() for item in text.split(", "))}


@pytest.mark.slow
def test_induction_heads(tmp_path):
    result = run_script("induction_heads", tmp_path)
    # attn-only-2l-induction: one clear previous-token head (L0H2, 0.65; L0H1 and L0H3 share the role in part)
    assert result["previous_token_head"] == "L0H2" and result["previous_token_score"] > 0.6
    assert result["induction_head"].startswith("L1") and result["induction_score"] > 0.9
    induction_heads = scores_by_head(result["induction_score_every_layer_1_head"])
    assert len(induction_heads) == 4 and min(induction_heads.values()) > 0.8, f"all four layer-1 heads induct: {induction_heads}"
    prev = scores_by_head(result["previous_token_score_every_layer_0_head"])
    assert max(prev, key=prev.get) == "L0H2" and sorted(prev.values())[-2] < 0.5, f"one clear previous-token head: {prev}"
    assert " ± " in result["induction_score_over_seeds"], "head scores should be reported with their spread over seeds"
    assert result["k_composition_of_pair"] > 1.5 * result["k_composition_random_baseline"], "K-composition should stand out"
    assert (tmp_path / "k_composition.csv").exists()


@pytest.mark.slow
def test_induction_circuits(tmp_path):
    result = run_script("induction_circuits", tmp_path)
    assert result["induction_head_copying_score"] > 0.9
    assert result["induction_head_ov_top1_is_same_token"] > 0.8
    copying = scores_by_head(result["copying_score_every_layer_1_head"])
    assert min(copying.values()) > 0.85, f"every induction head's OV circuit should copy: {copying}"


@pytest.mark.slow
def test_modadd_fourier(tmp_path):
    import pandas as pd

    result = run_script("modadd_fourier", tmp_path)
    wrong, of = (int(n.replace(",", "")) for n in result["wrong_of_test_pairs"].split(" of "))
    assert of == 8939 and result["test_accuracy"] == round(1 - wrong / of, 5), "exact accuracy over the 8,939 test pairs"
    assert result["test_accuracy"] >= 0.999, "the shipped modadd-1l has grokked"
    assert result["embedding_share_in_key_frequencies"] >= 0.9 and result["neuron_variance_share_in_key_frequencies"] >= 0.9
    table = pd.read_csv(tmp_path / "frequencies.csv")
    # a key frequency is one that >= 2% of the live neurons (counted from neurons.csv) name as their top frequency
    neurons = pd.read_csv(tmp_path / "neurons.csv")
    votes = neurons["top_frequency"].value_counts()
    expected = sorted(int(k) for k, n in votes.items() if n >= 0.02 * len(neurons))
    assert result["key_frequencies"] == expected == sorted(table.loc[table["is_key"], "frequency"].tolist())


@pytest.mark.slow
def test_ioi_patching(tmp_path):
    result = run_script("ioi_patching", tmp_path)
    assert result["clean_logit_diff"] > 2 and result["corrupted_logit_diff"] < -2
    assert result["attribution_vs_activation_correlation"] > 0.7
    top_path_head = result["heads_by_path_to_logits"][0][0]
    assert top_path_head.startswith("L2"), "the heads with the largest direct path to the logits sit in the last layer"
    looks = result["path_heads_attention_from_end"][top_path_head]
    assert looks["S2"] > 0.9 and looks["IO"] < 0.05, f"{top_path_head} should attend from the end to S2, not the IO: {looks}"
    assert not any("name mover" in key for key in result), "ioi-mini's layer-2 heads suppress S; they are not name movers"
    assert {path.name for path in tmp_path.glob("*.csv")} == {"resid_pre.csv", "head_out.csv", "path_heads_to_logits.csv"}


@pytest.mark.slow
def test_ioi_circuit(tmp_path):
    result = run_script("ioi_circuit", tmp_path)
    direct = result["largest_direct_paths"]
    assert direct and all(row["head"].startswith("L2") for row in direct), f"the direct paths sit in the last layer: {direct}"
    for row in direct:
        assert row["attention_END_to_S2"] > 0.5 and row["attention_END_to_IO"] < 0.05, f"{row['head']} attends END->S2: {row}"
    # Honest negative result on today's weights: subject suppression, so the search finds no name movers (issue 13)
    assert result["name_movers"] == [] and result["s_inhibition"] == [], "a name mover found: update the card and README"
    assert {path.name for path in tmp_path.glob("*.csv")} == {"path_heads_to_logits.csv"}
