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
    from interp_transformer.toy.ioi import HEAD_CLASSES, label

    result = run_script("ioi_patching", tmp_path)
    assert result["clean_logit_diff"] > 2 and result["corrupted_logit_diff"] < -2
    duplicate_token = label(HEAD_CLASSES["duplicate_token"][0])
    top_output_head, restored = result["heads_by_output_patching"][0]
    assert top_output_head == duplicate_token and restored > 0.9, (
        f"the duplicate-token head alone should restore the answer when S2 is renamed: {result['heads_by_output_patching']}")
    movers = {label(head) for head in HEAD_CLASSES["name_movers"]}
    top_path_heads = [head for head, _ in result["heads_by_path_to_logits"]]
    assert set(top_path_heads) == movers, f"the largest direct paths should be the name movers {movers}: {top_path_heads}"
    for head in top_path_heads:
        looks = result["path_heads_attention_from_end"][head]
        assert looks["IO"] > 0.9 and looks["S2"] < 0.05, f"{head} should attend from the end to the IO: {looks}"
    correlation = result["attribution_vs_activation_correlation"]
    assert -1 <= correlation < 0.7, (
        f"the docstring and README say attribution patching misses L0H0's all-or-nothing effect here; r = {correlation}")
    assert {path.name for path in tmp_path.glob("*.csv")} == {"resid_pre.csv", "head_out.csv", "path_heads_to_logits.csv"}


@pytest.mark.slow
def test_ioi_circuit(tmp_path):
    from interp_transformer.toy import ioi

    result = run_script("ioi_circuit", tmp_path)
    found = {kind: sorted(row["head"] for row in result[kind]) for kind in ioi.HEAD_CLASSES}
    expected = {kind: sorted(ioi.label(head) for head in heads) for kind, heads in ioi.HEAD_CLASSES.items()}
    assert found == expected, "path patching should recover the head classes the model card names"
    for row in result["name_movers"]:
        assert row["attention_END_to_IO"] > 0.9 and row["copying_score_in_context"] >= 0.9, f"not a name mover: {row}"
    for row in result["s_inhibition"]:
        assert row["attention_END_to_S2"] > 0.8 and row["effect_via_name_mover_queries"] < -0.1, f"not S-inhibition: {row}"
    moved = result["name_mover_attention_when_s_inhibition_patched_into_queries"]
    assert moved["patched_IO"] < moved["clean_IO"] - 0.3, f"S-inhibition output in the queries should pull attention off the IO: {moved}"
    assert result["s_inhibition_together_via_queries"] < -0.5
    for row in result["duplicate_token"] + result["induction"]:
        assert max(row["attention_S2_to_S1"], row["attention_S2_to_after_S1"]) > 0.8, f"acts at S2: {row}"
        assert row["effect_via_s_inhibition_values"] < -0.5, f"feeds the S-inhibition heads: {row}"
    written = {path.name for path in tmp_path.glob("*.csv")}
    assert written == {"path_heads_to_logits.csv", "path_heads_to_name_mover_queries.csv", "path_heads_to_s_inhibition_values.csv"}


@pytest.mark.parametrize(
    "script,argv,message",
    [
        ("ioi_circuit", ["--prompts", "0"], "at least 2 prompts"),
        ("ioi_circuit", ["--threshold", "-1"], "share of the logit difference"),
        ("ioi_circuit", ["--copying", "2"], "share of prompts"),
        ("ioi_patching", ["--prompts", "1"], "at least 2 prompts"),
    ],
)
def test_ioi_scripts_refuse_bad_arguments_before_writing(tmp_path, capsys, script, argv, message):
    spec = importlib.util.spec_from_file_location(script, ANALYSES / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        module.main(argv + ["--out", str(out)])
    assert message in capsys.readouterr().err
    assert not out.exists(), "a refused run leaves no output folder"
