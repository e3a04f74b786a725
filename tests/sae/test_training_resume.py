"""Checkpoints: an interrupted run resumed ends bitwise equal to an uninterrupted one; mismatched resumes are refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import RESID, cache_induction_store

from interp_transformer.sae.checkpoint import CHECKPOINT_FILE
from interp_transformer.sae.training import train_sae
from interp_transformer.store import ActivationStore

# Every piece of state is exercised: Adam, the dead-feature counters (AuxK switches on), a buffer refill mid-run.
SETTINGS = dict(d_sae=128, architecture="topk", k=2, batch_size=64, lr=1e-3, buffer_size=512, dead_after_tokens=64 * 3, log_every=1, progress=False)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ActivationStore:
    return ActivationStore(cache_induction_store(tmp_path_factory.mktemp("store") / "s", n_sequences=64))


def _interrupt_at(step: int):
    def log(metrics):
        if metrics["step"] == step:
            raise Interrupted
    return log


def _same(a: dict, b: dict) -> list[str]:
    return [name for name in a if not torch.equal(a[name], b[name])]


def test_an_interrupted_run_resumed_equals_an_uninterrupted_one(store, tmp_path):
    logs = []
    whole = train_sae(store, RESID, steps=14, checkpoint_dir=tmp_path / "whole", log=logs.append, **SETTINGS)
    assert max(entry["dead_fraction"] for entry in logs) > 0 and any(entry["aux_loss"] > 0 for entry in logs), "the run should have dead features, so AuxK and the counters matter"
    with pytest.raises(Interrupted):
        train_sae(store, RESID, steps=14, checkpoint_dir=tmp_path / "cut", checkpoint_every=4, log=_interrupt_at(10), **SETTINGS)
    assert load_file(tmp_path / "cut" / CHECKPOINT_FILE)["adam.W_enc.step"].item() == 8, "the last checkpoint before step 10 is step 8's"
    assert not list((tmp_path / "cut").glob(".*.tmp")), "an atomic write leaves no temporary file"
    resumed = train_sae(store, RESID, steps=14, checkpoint_dir=tmp_path / "cut", checkpoint_every=4, resume=True, **SETTINGS)
    differ = _same(whole.state_dict(), resumed.state_dict())
    assert not differ, f"resumed weights {differ} differ from the uninterrupted run's: some state was not saved or restored"
    final_whole, final_resumed = load_file(tmp_path / "whole" / CHECKPOINT_FILE), load_file(tmp_path / "cut" / CHECKPOINT_FILE)
    assert not _same(final_whole, final_resumed), f"final checkpoints differ in {_same(final_whole, final_resumed)} (Adam moments or dead counters)"


def test_a_finished_run_can_be_extended(store, tmp_path):
    straight = train_sae(store, RESID, steps=9, **SETTINGS)
    train_sae(store, RESID, steps=5, checkpoint_dir=tmp_path / "run", **SETTINGS)
    extended = train_sae(store, RESID, steps=9, checkpoint_dir=tmp_path / "run", resume=True, **SETTINGS)
    assert not _same(straight.state_dict(), extended.state_dict()), "5 steps, then 4 more, must equal 9 steps (no schedule depends on the total)"


def test_resuming_refuses_what_would_change_the_result(store, tmp_path):
    train_sae(store, RESID, steps=2, checkpoint_dir=tmp_path / "run", **SETTINGS)
    with pytest.raises(FileExistsError, match=r"already holds a training checkpoint \(step 2\); pass resume=True"):
        train_sae(store, RESID, steps=4, checkpoint_dir=tmp_path / "run", **SETTINGS)
    with pytest.raises(ValueError, match=r"cannot be resumed: lr: stored 0.001, now 0.002"):
        train_sae(store, RESID, steps=4, checkpoint_dir=tmp_path / "run", resume=True, **{**SETTINGS, "lr": 2e-3})
    with pytest.raises(ValueError, match=r"cannot be resumed: config: .*'k': 2.*'k': 3"):
        train_sae(store, RESID, steps=4, checkpoint_dir=tmp_path / "run", resume=True, **{**SETTINGS, "k": 3})
    with pytest.raises(ValueError, match=r"is at step 2, past steps=1; pass steps >= 2"):
        train_sae(store, RESID, steps=1, checkpoint_dir=tmp_path / "run", resume=True, **SETTINGS)
    (tmp_path / "run" / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="is not a readable training checkpoint"):
        train_sae(store, RESID, steps=4, checkpoint_dir=tmp_path / "run", resume=True, **SETTINGS)
    fresh = train_sae(store, RESID, steps=2, checkpoint_dir=tmp_path / "new", resume=True, **SETTINGS)
    assert (tmp_path / "new" / CHECKPOINT_FILE).is_file() and fresh is not None, "resume=True with no checkpoint yet starts a new run"


KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from interp_transformer.sae.training import train_sae

def log(metrics):
    if metrics["step"] == 10:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally blocks: what a crash or an OOM kill leaves

train_sae(sys.argv[1], {hook!r}, steps=14, checkpoint_dir=sys.argv[2], checkpoint_every=4, log=log, **{settings!r})
"""


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_uninterrupted_result(store, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN.format(hook=RESID, settings=SETTINGS))
    child = subprocess.run([sys.executable, str(script), str(store.path), str(tmp_path / "cut")], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, f"the child should have been killed at step 10:\n{child.stderr[-2000:]}"
    assert load_file(tmp_path / "cut" / CHECKPOINT_FILE)["adam.W_enc.step"].item() == 8
    resumed = train_sae(store, RESID, steps=14, checkpoint_dir=tmp_path / "cut", checkpoint_every=4, resume=True, **SETTINGS)
    whole = train_sae(store, RESID, steps=14, **SETTINGS)
    assert not _same(whole.state_dict(), resumed.state_dict()), "a run killed with SIGKILL and resumed must end where an uninterrupted run ends"
