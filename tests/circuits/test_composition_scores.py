"""Composition scores against the Frobenius-norm definition computed densely, on hand-built and random heads."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_config
from interp_transformer import HookedTransformer
from interp_transformer.circuits import (
    FactoredMatrix,
    all_composition_scores,
    composition_score,
    pairwise_composition_scores,
    random_composition_baseline,
)


def dense_score(W_A: torch.Tensor, W_B: torch.Tensor) -> float:
    """Elhage et al. (2021): ||W_A W_B||_F / (||W_A||_F ||W_B||_F)."""
    return (torch.linalg.matrix_norm(W_A @ W_B) / (torch.linalg.matrix_norm(W_A) * torch.linalg.matrix_norm(W_B))).item()


def one_dimensional_heads_model() -> HookedTransformer:
    """Two layers of one head each, d_model=4, d_head=1, no LayerNorm: every circuit is an outer product of basis vectors."""
    cfg = tiny_config(
        d_model=4, n_heads=1, d_head=1, n_layers=2, attn_only=True, normalization_type=None,
        allow_d_model_mismatch=True, dtype=torch.float64,
    )
    return HookedTransformer(cfg).eval()


def set_head(model: HookedTransformer, layer: int, W_Q, W_K, W_V, W_O) -> None:
    attn = model.blocks[layer].attn
    with torch.no_grad():
        for param, vector in ((attn.W_Q, W_Q), (attn.W_K, W_K), (attn.W_V, W_V)):
            param.copy_(torch.tensor(vector, dtype=torch.float64).view(1, 4, 1))
        attn.W_O.copy_(torch.tensor(W_O, dtype=torch.float64).view(1, 1, 4))


E = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]  # basis vectors e0..e3
HALF = [0.0, 1 / math.sqrt(2), 0.0, 1 / math.sqrt(2)]  # (e1 + e3) / sqrt(2)


@pytest.mark.parametrize(
    "later_head, expected",
    [
        # The earlier head writes e1 (reading e0). Which of the later head's inputs read e1?
        (dict(W_Q=E[1], W_K=E[2], W_V=E[3], W_O=E[0]), {"Q": 1.0, "K": 0.0, "V": 0.0}),
        (dict(W_Q=E[2], W_K=E[1], W_V=E[3], W_O=E[0]), {"Q": 0.0, "K": 1.0, "V": 0.0}),
        (dict(W_Q=E[2], W_K=E[3], W_V=E[1], W_O=E[0]), {"Q": 0.0, "K": 0.0, "V": 1.0}),
        (dict(W_Q=HALF, W_K=E[2], W_V=HALF, W_O=E[0]), {"Q": 1 / math.sqrt(2), "K": 0.0, "V": 1 / math.sqrt(2)}),
    ],
    ids=["Q", "K", "V", "half-Q-half-V"],
)
def test_hand_built_heads_compose_as_designed(later_head, expected):
    model = one_dimensional_heads_model()
    set_head(model, 0, W_Q=E[3], W_K=E[3], W_V=E[0], W_O=E[1])
    set_head(model, 1, **later_head)
    for mode, value in expected.items():
        for fold in (True, False):
            scores = all_composition_scores(model, mode, fold_layer_norm=fold)
            assert scores.shape == (2, 1, 2, 1)
            assert scores[0, 0, 1, 0].item() == pytest.approx(value, abs=1e-12), f"{mode}-composition of the hand-built pair"
            assert scores[1, 0, 0, 0].item() == 0 and scores[0, 0, 0, 0].item() == 0, "only later heads can compose with earlier ones"


@pytest.mark.parametrize("fold_layer_norm", [False, True])
def test_all_composition_scores_match_the_dense_definition(fold_layer_norm):
    model = HookedTransformer(tiny_config(n_layers=3, dtype=torch.float64)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block in model.blocks:
            block.ln1.w.copy_(torch.rand(model.cfg.d_model, generator=generator, dtype=torch.float64) + 0.5)
    d_model = model.cfg.d_model
    centre = torch.eye(d_model, dtype=torch.float64) - 1 / d_model

    def reader(layer: int, W: torch.Tensor) -> torch.Tensor:
        return centre @ torch.diag(model.blocks[layer].ln1.w) @ W if fold_layer_norm else W

    for mode in "QKV":
        scores = all_composition_scores(model, mode, fold_layer_norm=fold_layer_norm)
        for l1 in range(3):
            for h1 in range(4):
                OV = reader(l1, model.W_V[l1, h1]) @ model.W_O[l1, h1]
                for l2 in range(3):
                    for h2 in range(4):
                        QK = reader(l2, model.W_Q[l2, h2]) @ reader(l2, model.W_K[l2, h2]).T
                        right = {"Q": QK, "K": QK.T, "V": reader(l2, model.W_V[l2, h2]) @ model.W_O[l2, h2]}[mode]
                        expected = dense_score(OV, right) if l1 < l2 else 0.0
                        assert scores[l1, h1, l2, h2].item() == pytest.approx(expected, rel=1e-9, abs=1e-12), (
                            f"{mode}-composition L{l1}H{h1} -> L{l2}H{h2} (fold_layer_norm={fold_layer_norm})"
                        )


def test_composition_score_broadcasts_and_pairwise_takes_every_pair():
    generator = torch.Generator().manual_seed(1)
    factors = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    left = FactoredMatrix(factors(3, 6, 2), factors(3, 2, 6))
    right = FactoredMatrix(factors(5, 6, 3), factors(5, 3, 4))
    pairwise = pairwise_composition_scores(left, right)
    assert pairwise.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            assert pairwise[i, j].item() == pytest.approx(dense_score(left[i].AB, right[j].AB), rel=1e-9)
    elementwise = composition_score(left[:, None], right[None])
    torch.testing.assert_close(elementwise, pairwise)


def test_random_baseline_is_near_one_over_sqrt_d_model():
    """E[score^2] = 1/d_model exactly for randomly oriented matrices; the mean score sits just under its root."""
    for d_model, d_head in ((64, 16), (32, 4)):
        baseline = random_composition_baseline(d_model, d_head, n_samples=512)
        assert 0.9 / math.sqrt(d_model) < baseline < 1.05 / math.sqrt(d_model), f"baseline {baseline} for d_model={d_model}"
    assert random_composition_baseline(16, 4, seed=3) == random_composition_baseline(16, 4, seed=3), "the baseline should be seeded"


def test_bad_inputs_are_named():
    model = HookedTransformer(tiny_config())
    with pytest.raises(ValueError, match=r"mode must be one of \['Q', 'K', 'V'\], got 'X'"):
        all_composition_scores(model, "X")
    left = FactoredMatrix(torch.randn(6, 2), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\[6, 5\] and \[6, 6\]"):
        composition_score(left, FactoredMatrix(torch.randn(6, 2), torch.randn(2, 6)))
    with pytest.raises(ValueError, match="positive"):
        random_composition_baseline(0, 4)
