"""Copying scores from the eigenvalues of each head's full OV circuit."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from interp_transformer import HookedTransformer
from interp_transformer.circuits import copying_score_from_eigenvalues, copying_scores, ov_unembed_circuit, ov_unembed_eigenvalues


def test_eigenvalues_are_the_nonzero_eigenvalues_of_the_dense_circuit():
    model = HookedTransformer(tiny_config(dtype=torch.float64, n_heads=2, d_head=16)).eval()
    with torch.no_grad():
        model.ln_final.w.uniform_(0.5, 1.5)
        model.blocks[1].ln1.w.uniform_(0.5, 1.5)
    for fold in (True, False):
        ours = ov_unembed_eigenvalues(model, fold_layer_norm=fold)
        assert ours.shape == (2, 2, 16)
        for layer in range(2):
            for head in range(2):
                dense = torch.linalg.eigvals(ov_unembed_circuit(model, layer, head, fold_layer_norm=fold).AB)
                nonzero = dense[dense.abs() > 1e-9 * dense.abs().max()]
                distance = (ours[layer, head, :, None] - nonzero[None, :]).abs()
                scale = dense.abs().max()
                assert nonzero.numel() == 16, "a rank-d_head circuit has d_head nonzero eigenvalues"
                assert distance.min(0).values.max() < 1e-9 * scale and distance.min(1).values.max() < 1e-9 * scale, (
                    f"eigenvalues of L{layer}H{head} (fold_layer_norm={fold}) differ from the dense circuit's"
                )


def test_score_of_an_eigenvalue_spectrum():
    assert copying_score_from_eigenvalues(torch.tensor([1.0, 2.0, 3.0]) + 0j).item() == pytest.approx(1.0)
    assert copying_score_from_eigenvalues(torch.tensor([1.0, -1.0]) + 0j).item() == pytest.approx(0.0)
    conjugate_pair = torch.tensor([1 + 2j, 1 - 2j])
    assert copying_score_from_eigenvalues(conjugate_pair).item() == pytest.approx(2 / (2 * 5**0.5))


def test_hand_built_copying_and_anti_copying_heads():
    """With W_E = W_U = identity, a head whose OV is a projection copies (+1); its negation anti-copies (-1)."""
    model = HookedTransformer(tiny_config(d_vocab=32, n_heads=4, d_head=8, normalization_type=None, dtype=torch.float64)).eval()
    basis, _ = torch.linalg.qr(torch.randn(32, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        model.embed.W_E.copy_(torch.eye(32))
        model.unembed.W_U.copy_(torch.eye(32))
        attn = model.blocks[0].attn
        attn.W_V[0], attn.W_O[0] = basis, basis.T
        attn.W_V[1], attn.W_O[1] = basis, -basis.T
    scores = copying_scores(model)
    assert scores.shape == (2, 4)
    assert scores[0, 0].item() == pytest.approx(1.0, abs=1e-12), "a projection OV circuit should score +1"
    assert scores[0, 1].item() == pytest.approx(-1.0, abs=1e-12), "a negated projection should score -1"
    assert bool((scores.abs() <= 1 + 1e-12).all()), "copying scores lie in [-1, 1]"


def test_unequal_input_and_output_vocabularies_are_refused():
    model = HookedTransformer(tiny_config(d_vocab_out=200))
    with pytest.raises(ValueError, match="d_vocab == d_vocab_out, got 300 and 200"):
        copying_scores(model)
