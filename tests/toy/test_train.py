"""The training loop: schedule, masked loss, that it learns, and the retraining command."""

from __future__ import annotations

import torch

from interp_transformer import HookedTransformer
from interp_transformer.toy import induction, modadd
from interp_transformer.toy.train import Batch, TrainSettings, lr_at, main, masked_loss, train


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    settings = TrainSettings(steps=100, batch_size=1, lr=1.0, warmup_steps=10, min_lr_fraction=0.1)
    lrs = [lr_at(step, settings) for step in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0, "linear warm-up should reach the peak at the last warm-up step"
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])), "after warm-up the rate must not increase"
    assert abs(lrs[-1] - 0.1) < 1e-3, "cosine decay should end at min_lr_fraction of the peak"


def test_masked_loss_counts_only_masked_predictions():
    model = HookedTransformer(induction.CONFIG)
    tokens = induction.sample_batch(torch.Generator().manual_seed(0), 4).tokens
    mask = torch.zeros(4, tokens.shape[1] - 1)
    mask[:, 5] = 1
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    assert torch.allclose(masked_loss(model, Batch(tokens, mask)), per_token[:, 5].mean())


def test_training_reduces_the_loss():
    torch.manual_seed(0)
    model = HookedTransformer(induction.CONFIG.replace(n_layers=1))
    settings = TrainSettings(steps=30, batch_size=16, lr=3e-3, warmup_steps=5, eval_every=15)
    fixed = induction.sample_batch(torch.Generator().manual_seed(1), 16)
    before = masked_loss(model, fixed).item()
    result = train(model, lambda generator, size: fixed, settings, log=lambda line: None)
    assert result.final_loss < before - 0.5, f"30 steps on one batch should overfit it: {before} -> {result.final_loss}"
    assert [record["step"] for record in result.history] == [15, 30]


def test_retrain_command_writes_a_loadable_model_with_card(tmp_path):
    assert main(["modadd-1l", "--steps", "2", "--out", str(tmp_path)]) == 0
    model = HookedTransformer.from_pretrained(tmp_path)
    assert model.cfg == modadd.CONFIG
    assert "## Retrain" in (tmp_path / "MODEL_CARD.md").read_text()


def test_thread_count_and_determinism_hold_for_the_run_only():
    """``threads``/``deterministic`` apply while training (seen from inside the loss) and are restored afterwards."""
    seen = []

    def loss_fn(model, batch, step):
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))
        return masked_loss(model, batch)

    torch.manual_seed(0)
    model = HookedTransformer(induction.CONFIG.replace(n_layers=1))
    fixed = induction.sample_batch(torch.Generator().manual_seed(1), 4)
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    wanted_threads = 1 if before[0] != 1 else 2
    settings = TrainSettings(steps=2, batch_size=4, eval_every=2, threads=wanted_threads, deterministic=True)
    train(model, lambda generator, size: fixed, settings, loss_fn=loss_fn, log=lambda line: None)
    assert seen == [(wanted_threads, True)] * 2, f"the run should use {wanted_threads} thread(s), deterministic: {seen}"
    after = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    assert after == before, f"train() must give back the caller's thread count and determinism: {before} -> {after}"
