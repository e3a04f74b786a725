"""`interp-transformer cache`: data formats, hook patterns, errors, resume, and torchrun with two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CORPUS, build_bpe_tokenizer, tiny_config

from interp_transformer import HookedTransformer
from interp_transformer.cli import main
from interp_transformer.store import ActivationStore

PATTERN = "blocks.*.hook_resid_post,blocks.1.attn.hook_pattern"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    HookedTransformer(tiny_config(), tokenizer=build_bpe_tokenizer()).save_pretrained(directory)
    return directory


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "data.txt"
    path.write_text("\n\n".join(CORPUS) + "\n")
    return path


def _cache(saved_model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["cache", "--model", str(saved_model), "--data", str(data), "--hooks", PATTERN, "--out", str(out), "--seq-len", "16", "--no-progress", *extra])


def test_text_jsonl_and_token_files_give_the_same_store(saved_model, text_file, tmp_path, capsys):
    assert _cache(saved_model, text_file, tmp_path / "txt", "--batch-size", "3", "--dtype", "bfloat16") == 0
    out = capsys.readouterr().out
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS))
    assert _cache(saved_model, jsonl, tmp_path / "jsonl", "--batch-size", "3", "--dtype", "bfloat16") == 0
    from_text = ActivationStore(tmp_path / "txt")
    assert f"wrote {len(from_text)} sequences ({16 * len(from_text)} tokens)" in out and len(from_text) > 10
    assert from_text.hooks == ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern", "blocks.1.hook_resid_post"]
    assert from_text[0]["blocks.1.hook_resid_post"].dtype == torch.bfloat16
    tokens = from_text.rows(0, len(from_text))["tokens"]
    assert torch.equal(ActivationStore(tmp_path / "jsonl").rows(0, len(from_text))["tokens"], tokens)
    torch.save(tokens, tmp_path / "tokens.pt")
    assert main(["cache", "--model", str(saved_model), "--data", str(tmp_path / "tokens.pt"), "--hooks", "hook_embed", "--out", str(tmp_path / "pt"), "--pos-slice", "-1", "--no-progress"]) == 0
    pt_store = ActivationStore(tmp_path / "pt")
    assert pt_store[3]["hook_embed"].shape == (32,) and torch.equal(pt_store[3]["tokens"], tokens[3])


def test_errors_are_reported_not_raised(saved_model, text_file, tmp_path, capsys):
    def run(*args: str) -> str:
        assert main(["cache", "--model", str(saved_model), "--out", str(tmp_path / "out"), "--no-progress", *args]) == 1
        return capsys.readouterr().err

    assert "closest valid names: ['blocks.0.hook_resid_post'" in run("--data", str(text_file), "--hooks", "blocks.0.hook_resid_pots")
    assert "pattern 'blocks.*.hook_nothing' matches none" in run("--data", str(text_file), "--hooks", "blocks.*.hook_nothing")
    assert "does not exist" in run("--data", str(tmp_path / "missing.txt"), "--hooks", "hook_embed")
    (tmp_path / "data.csv").write_text("a,b\n")
    assert "cannot read data file" in run("--data", str(tmp_path / "data.csv"), "--hooks", "hook_embed")
    assert "--pos-slice must be" in run("--data", str(text_file), "--hooks", "hook_embed", "--pos-slice", "last")


def test_resume_flag(saved_model, text_file, tmp_path, capsys):
    assert _cache(saved_model, text_file, tmp_path / "out") == 0
    assert _cache(saved_model, text_file, tmp_path / "out") == 1
    assert "pass resume=True (--resume)" in capsys.readouterr().err
    assert _cache(saved_model, text_file, tmp_path / "out", "--resume") == 0
    assert _cache(saved_model, text_file, tmp_path / "out", "--resume", "--batch-size", "2") == 1
    assert "batch_size: stored 8, now 2" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_with_two_gloo_processes_writes_the_same_bytes_as_one_process(saved_model, text_file, tmp_path):
    args = ["cache", "--model", str(saved_model), "--data", str(text_file), "--hooks", PATTERN, "--seq-len", "16", "--shard-mb", "0.02", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "interp_transformer.cli", *args, "--out", str(tmp_path / "two")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    one = {p.name: p.read_bytes() for p in sorted((tmp_path / "one").iterdir())}
    two = {p.name: p.read_bytes() for p in sorted((tmp_path / "two").iterdir())}
    assert len(one) > 8, "the shard size should split this corpus into several shards (so both processes get some)"
    assert one.keys() == two.keys() and all(one[name] == two[name] for name in one), (
        f"files that differ between 1 and 2 processes: {[n for n in one if one[n] != two.get(n)]}"
    )
