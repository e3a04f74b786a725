"""Dead features: resampling revives them (in training and by hand), AuxK matches its formula and reaches only them."""

from __future__ import annotations

import pytest
import torch
from training_helpers import RESID, cache_induction_store

from interp_transformer.sae import SAEConfig, SparseAutoencoder
from interp_transformer.sae.dead_features import auxk_loss, resample_dead_features
from interp_transformer.sae.training import train_sae
from interp_transformer.store import ActivationStore


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ActivationStore:
    return ActivationStore(cache_induction_store(tmp_path_factory.mktemp("store") / "s", n_sequences=128))


def _with_dead_features(store: ActivationStore, n_dead: int) -> SparseAutoencoder:
    """A ReLU SAE whose first ``n_dead`` features can never fire: their encoder bias is -1000."""
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=64, hook_name=RESID), seed=0)
    x = store.rows(0, len(store))[RESID].reshape(-1, 64)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
        sae.b_enc[:n_dead] = -1000.0
    return sae


def _features_that_fire(sae: SparseAutoencoder, store: ActivationStore) -> torch.Tensor:
    x = store.rows(0, len(store))[RESID].reshape(-1, 64)
    with torch.no_grad():
        return (sae.encode(x) > 0).any(0)


def test_resampling_revives_dead_features_in_training(store):
    start = _with_dead_features(store, n_dead=32)
    assert not _features_that_fire(start, store)[:32].any()
    settings = dict(steps=40, batch_size=128, lr=1e-3, l1_coefficient=0.05, buffer_size=2048, dead_after_tokens=128 * 5, log_every=40, progress=False)
    logs_without, logs_with = [], []
    without = train_sae(store, RESID, start_from=start, log=logs_without.append, **settings)
    revived = train_sae(store, RESID, start_from=start, resample_every=10, log=logs_with.append, **settings)
    assert torch.equal(start.b_enc[:32], torch.full((32,), -1000.0)), "start_from must be copied, not trained in place"
    assert not _features_that_fire(without, store)[:32].any(), "without resampling the blocked features should stay dead (the test's premise)"
    assert logs_without[-1]["dead_fraction"] >= 0.5
    fire = _features_that_fire(revived, store)
    assert int(fire[:32].sum()) >= 28, f"after resampling only {int(fire[:32].sum())} of the 32 dead features fire on the stored rows"
    assert logs_with[-1]["dead_fraction"] < 0.1, f"dead fraction {logs_with[-1]['dead_fraction']} after resampling every 10 steps"


def test_resampling_by_hand():
    """Rows 0-2 are reconstructed exactly by an identity ReLU SAE, row 3 is not: every dead feature must take row 3."""
    sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=4), init_weights=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4) * 2.0)  # live encoder columns have norm 2
        sae.W_dec.copy_(torch.eye(4) * 0.5)
    inputs = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 0], [3.0, -4.0, 0, 0]])
    optimizer = torch.optim.Adam(sae.parameters())
    for parameter in sae.parameters():
        optimizer.state[parameter] = {"step": torch.tensor(5.0), "exp_avg": torch.ones_like(parameter), "exp_avg_sq": torch.ones_like(parameter)}
    dead = torch.tensor([False, False, True, True])
    assert resample_dead_features(sae, optimizer, inputs, dead, seed=0, step=7) == 2
    direction = torch.tensor([0.6, -0.8, 0, 0])
    assert torch.allclose(sae.W_dec[2:], direction.expand(2, 4)), f"dead decoder rows {sae.W_dec[2:]} should be row 3, normalised"
    assert torch.allclose(sae.W_enc[:, 2:].T, (0.2 * 2.0 * direction).expand(2, 4)), "dead encoder columns: 0.2 x the mean live encoder norm (2) x the direction"
    assert torch.equal(sae.W_dec[:2], torch.eye(4)[:2] * 0.5) and torch.equal(sae.W_enc[:, :2], torch.eye(4)[:, :2] * 2.0), "live features must be untouched"
    assert torch.equal(sae.b_enc, torch.zeros(4))
    W_dec_moments = optimizer.state[sae.W_dec]["exp_avg"]
    assert torch.equal(W_dec_moments[2:], torch.zeros(2, 4)) and torch.equal(W_dec_moments[:2], torch.ones(2, 4)), "Adam must forget exactly the resampled rows"
    assert torch.equal(optimizer.state[sae.W_enc]["exp_avg_sq"][:, 2:], torch.zeros(4, 2)) and torch.equal(optimizer.state[sae.b_enc]["exp_avg"], torch.tensor([1.0, 1, 0, 0]))
    assert resample_dead_features(sae, optimizer, inputs, torch.zeros(4, dtype=torch.bool), seed=0, step=8) == 0


def test_auxk_loss_matches_its_definition_and_trains_only_dead_features():
    generator = torch.Generator().manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=6, d_sae=10, architecture="topk", k=2), seed=0)
    acts_pre = torch.randn(5, 10, generator=generator)
    residual = torch.randn(5, 6, generator=generator)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[1, 4, 5, 8]] = True  # 4 dead, k_aux = d_in // 2 = 3
    W_dec = sae.W_dec.detach()
    expected = 0.0
    for row in range(5):
        candidates = sorted((float(acts_pre[row, i]), i) for i in range(10) if dead[i])[-3:]
        estimate = sum(value * W_dec[i] for value, i in candidates)
        expected += float((estimate - residual[row]).pow(2).sum()) / 5
    assert float(auxk_loss(sae, acts_pre, residual, dead).detach()) == pytest.approx(expected, rel=1e-5), "AuxK = mean over rows of ||sum of the top-3 dead features' decoder rows - residual||^2, scale min(4/3, 1) = 1"
    one_dead = torch.zeros(10, dtype=torch.bool)
    one_dead[4] = True
    single = sum(float((acts_pre[row, 4] * W_dec[4] - residual[row]).pow(2).sum()) for row in range(5)) / 5
    assert float(auxk_loss(sae, acts_pre, residual, one_dead).detach()) == pytest.approx(single / 3, rel=1e-5), "with 1 dead feature of k_aux=3 the loss is scaled by 1/3"
    auxk_loss(sae, acts_pre, residual, dead).backward()
    touched = sae.W_dec.grad.abs().sum(-1) > 0
    assert touched.tolist() == dead.tolist(), f"AuxK moved decoder rows {touched.nonzero().flatten().tolist()}, not just the dead ones"
    assert float(auxk_loss(sae, acts_pre, residual, torch.zeros(10, dtype=torch.bool))) == 0
