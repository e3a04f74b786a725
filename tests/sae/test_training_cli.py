"""`interp-transformer sae train`: end to end, errors naming the flag, resume, and torchrun with two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from training_helpers import RESID, cache_induction_store

from interp_transformer.cli import main
from interp_transformer.sae import SparseAutoencoder
from interp_transformer.store import ActivationStore

FAST = ["--steps", "30", "--batch-size", "128", "--buffer-size", "2048", "--lr", "0.001", "--log-every", "10", "--no-progress"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return cache_induction_store(tmp_path_factory.mktemp("store") / "s", n_sequences=128)


def _train(store_path, out, *extra):
    return main(["sae", "train", "--store", str(store_path), "--hook", RESID, "--out", str(out), *FAST, *extra])


def test_train_writes_a_loadable_sae_and_a_log(store_path, tmp_path, capsys):
    assert _train(store_path, tmp_path / "sae", "--k", "4", "--expansion-factor", "2") == 0
    assert "trained topk SAE (64 -> 128 features) on blocks.1.hook_resid_pre for 30 steps" in capsys.readouterr().out
    sae = SparseAutoencoder.load(tmp_path / "sae")
    assert (sae.cfg.architecture, sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k, sae.cfg.hook_name) == ("topk", 64, 128, 4, RESID)
    assert sae.cfg.model_name == "attn-only-2l-induction"
    log = [json.loads(line) for line in (tmp_path / "sae" / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [10, 20, 30] and log[-1]["mse"] < log[0]["mse"]
    x = ActivationStore(store_path).rows(0, 32)[RESID].reshape(-1, 64)
    with torch.no_grad():
        ev = 1 - float((x - sae(x)).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert ev == pytest.approx(log[-1]["explained_variance"], abs=0.1), f"the saved SAE explains {ev:.3f} of stored rows; training logged {log[-1]['explained_variance']:.3f}"
    assert _train(store_path, tmp_path / "sae", "--k", "4", "--expansion-factor", "2") == 1
    assert "already holds a trained dictionary; pass --resume" in capsys.readouterr().err
    assert _train(store_path, tmp_path / "sae", "--k", "4", "--expansion-factor", "2", "--resume", "--steps", "40") == 0
    log = [json.loads(line) for line in (tmp_path / "sae" / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [10, 20, 30, 40], "a resumed run appends to the log"


def test_errors_name_the_flag_or_the_store(store_path, tmp_path, capsys):
    def error(*args):
        assert main(["sae", "train", "--store", str(store_path), "--out", str(tmp_path / "out"), "--no-progress", *args]) == 1
        return capsys.readouterr().err

    assert "no activations for hook 'blocks.0.hook_resid_pre'" in error("--hook", "blocks.0.hook_resid_pre")
    assert "it holds ['blocks.1.hook_resid_pre']" in error("--hook", "blocks.0.hook_resid_pre")
    assert "--batch-size 0 must be at least 1" in error("--hook", RESID, "--batch-size", "0")
    assert "--lr 0 must be greater than 0" in error("--hook", RESID, "--lr", "0")
    assert "--k applies to --architecture topk or batchtopk" in error("--hook", RESID, "--architecture", "standard", "--k", "4")
    assert "--k 600 is larger than the number of features (512)" in error("--hook", RESID, "--k", "600")
    assert "--architecture 'jumprelu' is not one of" in error("--hook", RESID, "--architecture", "jumprelu")
    assert "--precision 'fp16' is not one of ['float32', 'bfloat16']" in error("--hook", RESID, "--precision", "fp16")
    assert "no activation store at" in main_error(tmp_path, capsys)
    assert not (tmp_path / "out").exists(), "a refused command must not create --out"


def main_error(tmp_path, capsys):
    assert main(["sae", "train", "--store", str(tmp_path / "missing"), "--hook", RESID, "--out", str(tmp_path / "out")]) == 1
    return capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_with_two_gloo_processes_matches_one_process(store_path, tmp_path):
    args = ["sae", "train", "--store", str(store_path), "--hook", RESID, "--k", "4", "--d-sae", "128", *FAST]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "interp_transformer.cli", *args, "--out", str(tmp_path / "two")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    one, two = SparseAutoencoder.load(tmp_path / "one"), SparseAutoencoder.load(tmp_path / "two")
    for name, value in one.state_dict().items():
        difference = float((value - two.state_dict()[name]).abs().max())
        assert difference < 1e-4, f"{name} differs by {difference:g} between 1 and 2 processes: the gradient average or the data split is wrong"
    log_one = (tmp_path / "one" / "training_log.jsonl").read_text().splitlines()
    log_two = (tmp_path / "two" / "training_log.jsonl").read_text().splitlines()
    for a, b in zip(map(json.loads, log_one), map(json.loads, log_two), strict=True):
        assert a["l0"] == b["l0"] and a["mse"] == pytest.approx(b["mse"], rel=1e-4), f"metrics differ: {a} vs {b} (they must be summed over processes)"
