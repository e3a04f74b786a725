"""The main job: ``interp-transformer demo`` writes a self-contained report and its CSV tables, offline."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from interp_transformer.cli import main


@pytest.mark.slow
def test_demo_writes_report_and_tables(tmp_path):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    for section in ("Attention patterns, layer 0", "Attention patterns, layer 1", "Head detector: induction",
                    "Activation patching: resid_pre", "K-composition scores", "OV copying scores", "Logit lens"):
        assert section in page, f"report lacks the section {section!r}"
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page), "the report must inline everything it loads"
    assert "default-src 'none'" in page, "the report's Content-Security-Policy should forbid every fetch"
    tables = {path.name for path in tmp_path.glob("*.csv")}
    assert tables == {"head_detector_scores.csv", "patching_resid_pre.csv", "composition_scores.csv",
                      "ov_copying_scores.csv", "logit_lens.csv"}
    heads = pd.read_csv(tmp_path / "head_detector_scores.csv")
    assert len(heads) == 2 * 4, "one row per head of the 2-layer, 4-head model"
    patching = pd.read_csv(tmp_path / "patching_resid_pre.csv")
    assert patching["value"].max() > 0.9, "some residual-stream patch should restore the induction answer"


def test_models_command_lists_embedded_models(capsys):
    assert main(["models"]) == 0
    assert "attn-only-2l-induction" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_on_a_gpt2_directory(tmp_path, make_hf_gpt2):
    _, directory = make_hf_gpt2(with_tokenizer=True, n_layer=3)
    out = tmp_path / "report"
    assert main(["demo", "--model", str(directory), "--out", str(out)]) == 0
    assert "Attention patterns, layer 2" in (out / "index.html").read_text(encoding="utf-8")
    assert len(pd.read_csv(out / "head_detector_scores.csv")) == 3 * 4
