"""Circuits, composition scores, head detectors and FactoredMatrix against TransformerLens 3.x on the same weights.

Not part of the default run (the ``reference`` marker is deselected); run with
``python -m pytest -m reference tests/reference`` where ``transformer-lens`` is installed. The Llama
and Mistral pairs use grouped-query attention (2 and 1 key/value heads for 4 query heads), so every
per-head quantity checks that each query head is paired with the key/value head TransformerLens gives it.
Circuits are compared with ``fold_layer_norm=False``: TransformerLens's ``model.QK`` are the stored weights.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from transformer_lens_pairs import D_VOCAB, load_both, relative_difference

from interp_transformer.circuits import (
    FactoredMatrix,
    all_composition_scores,
    duplicate_token_scores,
    induction_scores,
    previous_token_scores,
    token_qk_circuit,
)

pytestmark = [
    pytest.mark.reference,
    pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning"),
]
TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def transformer_lens():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return pytest.importorskip("transformer_lens")


@pytest.fixture(scope="module", params=["gpt2", "llama", "mistral"])
def pair(request, transformer_lens, tmp_path_factory):
    # A folder named after the architecture would send TransformerLens down its name-matched config branches.
    return load_both(transformer_lens, request.param, tmp_path_factory.mktemp("checkpoint"), optional_hooks=False)


def assert_matches(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: our shape {tuple(ours.shape)} != TransformerLens's {tuple(theirs.shape)}"
    difference = relative_difference(ours.detach().float(), theirs.detach().float())
    assert difference < TOLERANCE, f"{what}: relative difference {difference:.2e} from TransformerLens (wrong kv head pairing?)"


def test_weight_views_and_QK_OV_match(pair):
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_K", "b_V"):
        assert_matches(getattr(pair.ours, name), getattr(pair.theirs, name), f"model.{name}")
    assert_matches(pair.ours.QK.AB, pair.theirs.QK.AB, "model.QK")
    assert_matches(pair.ours.OV.AB, pair.theirs.OV.AB, "model.OV")


def test_token_qk_circuit_and_composition_scores_match(pair):
    with torch.no_grad():
        theirs = pair.theirs.W_E @ pair.theirs.QK[0, 1] @ pair.theirs.W_E.T
        assert_matches(token_qk_circuit(pair.ours, 0, 1, fold_layer_norm=False).AB, theirs.AB, "token_qk_circuit(layer 0, head 1)")
        for mode in "QKV":
            assert_matches(
                all_composition_scores(pair.ours, mode, fold_layer_norm=False),
                pair.theirs.all_composition_scores(mode),
                f"{mode}-composition scores",
            )


def test_head_detectors_with_transformer_lens_options_match(pair):
    from transformer_lens.head_detector import detect_head

    x = torch.randint(1, D_VOCAB, (4, 9), generator=torch.Generator().manual_seed(4))
    tokens = torch.cat([torch.zeros(4, 1, dtype=torch.long), x, x], dim=1)
    # TransformerLens tokenises strings; hand it our tokens instead (prompt i is the string "i").
    pair.theirs.to_tokens = lambda seq, *args, **kwargs: tokens[int(seq)][None] if isinstance(seq, str) else tokens
    prompts = [str(i) for i in range(tokens.shape[0])]
    detectors = {"previous_token_head": previous_token_scores, "duplicate_token_head": duplicate_token_scores, "induction_head": induction_scores}
    for (name, ours), bos, current, measure in itertools.product(detectors.items(), [False, True], [False, True], ["mul", "abs"]):
        theirs = detect_head(pair.theirs, prompts, name, exclude_bos=bos, exclude_current_token=current, error_measure=measure)
        mine = ours(pair.ours, tokens, exclude_bos=bos, exclude_current_token=current, error_measure=measure, average_over="all_queries")
        # TransformerLens rounds each prompt's "abs" score to 3 decimals; we do not.
        tolerance = 5e-4 if measure == "abs" else 1e-5
        difference = (mine - theirs).abs().max().item()
        assert difference < tolerance, f"{name} exclude_bos={bos} exclude_current_token={current} {measure}: {difference:.2e}"


def test_factored_matrix_svd_unpacks_like_transformer_lens(transformer_lens):
    A, B = torch.randn(2, 6, 3, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    ours, theirs = FactoredMatrix(A, B), transformer_lens.FactoredMatrix(A, B)
    U, S, V = ours.svd()
    U_tl, S_tl, V_tl = theirs.svd()
    assert V.shape == V_tl.shape, "svd()'s third value must be V [... rdim rank], not transposed, as in TransformerLens"
    assert_matches(S, S_tl, "singular values")
    # Singular vectors are unique up to sign: compare the rank-one pieces u s v^T.
    assert_matches(U[..., :, :1] * V[..., None, :, 0], U_tl[..., :, :1] * V_tl[..., None, :, 0], "first singular pair")
    for name in ("norm", "collapse_l", "collapse_r"):
        ours_value, theirs_value = getattr(ours, name)(), getattr(theirs, name)()
        if name != "norm":  # sign freedom again: compare Gram matrices
            ours_value, theirs_value = ours_value.mT @ ours_value, theirs_value.mT @ theirs_value
        assert_matches(ours_value, theirs_value, name)
    assert ours.pair[0] is ours.A and ours.has_leading_dims == theirs.has_leading_dims
