"""On the embedded attn-only-2l-induction model: the circuit tools find the induction circuit it was trained to form."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.circuits import (
    all_composition_scores,
    copying_scores,
    decompose_attention_scores,
    detect_heads,
    induction_target,
    random_composition_baseline,
    repeated_tokens_for,
)
from interp_transformer.toy.registry import WEIGHTS_DIR, embedded_models

MODEL_NAME = "attn-only-2l-induction"


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    if MODEL_NAME not in embedded_models():
        pytest.fail(
            f"the embedded model {MODEL_NAME!r} is missing from {WEIGHTS_DIR}: these tests need its shipped weights. "
            f"Train them with `python -m interp_transformer.toy.train {MODEL_NAME}`."
        )
    return HookedTransformer.from_pretrained(MODEL_NAME).eval()


@pytest.fixture(scope="module")
def scores(model) -> dict[str, torch.Tensor]:
    return detect_heads(model)


@pytest.fixture(scope="module")
def circuit_heads(scores) -> tuple[int, int]:
    """(best previous-token head of layer 0, best induction head of layer 1)."""
    return int(scores["previous_token"][0].argmax()), int(scores["induction"][1].argmax())


def test_detectors_find_a_previous_token_head_in_layer_0_and_an_induction_head_in_layer_1(scores):
    previous, induction = scores["previous_token"], scores["induction"]
    assert previous[0].max() > 0.4, f"no previous-token head in layer 0: scores {previous.tolist()}"
    assert previous[0].max() > previous[1].max(), f"the best previous-token head should be in layer 0: {previous.tolist()}"
    assert induction[1].max() > 0.7, f"no induction head in layer 1: scores {induction.tolist()}"
    assert induction[0].max() < 0.1, f"layer 0 cannot do induction on its own, yet scores {induction[0].tolist()}"


def test_k_composition_of_the_previous_token_and_induction_pair_stands_out(model, scores, circuit_heads):
    previous_head, induction_head = circuit_heads
    composition = {mode: all_composition_scores(model, mode)[0, :, 1, :] for mode in "QKV"}  # [layer-0 head, layer-1 head]
    pair_k = composition["K"][previous_head, induction_head].item()
    baseline = random_composition_baseline(model.cfg.d_model, model.cfg.d_head)
    summary = f"K={composition['K'].tolist()}, Q={composition['Q'].tolist()}, V={composition['V'].tolist()}, baseline={baseline:.3f}"
    assert pair_k > 1.5 * baseline, f"K-composition L0H{previous_head} -> L1H{induction_head} is near chance: {summary}"
    pair_q_or_v = max(composition["Q"][previous_head, induction_head].item(), composition["V"][previous_head, induction_head].item())
    assert pair_k > 2 * pair_q_or_v, f"the pair should compose through keys, not queries or values: {summary}"
    # The previous-token role is spread over L0H1-L0H3 in the shipped model; their K-composition into the
    # induction head is about equal, so the detected head must be among the strongest key writers.
    strongest = composition["K"][:, induction_head].max().item()
    assert pair_k >= 0.9 * strongest, (
        f"the previous-token head L0H{previous_head} should be among the strongest K-writers into L1H{induction_head} "
        f"(>= 0.9 x {strongest:.3f}): {summary}; previous-token scores {scores['previous_token'][0].tolist()}"
    )


def test_the_induction_heads_keys_carry_the_previous_tokens_from_the_previous_token_head(model, scores, circuit_heads):
    """Query token embedding x key-side output of the previous-token head: high exactly at induction targets."""
    previous_head, induction_head = circuit_heads
    tokens = repeated_tokens_for(model, batch=8, seed=1)
    decomposition = decompose_attention_scores(model, tokens, 1, induction_head)
    embed = decomposition.components.index("embed")
    target = induction_target(tokens)
    causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).tril()
    other_keys = target.any(-1, keepdim=True) & ~target & causal
    separation = {}
    for head in range(model.cfg.n_heads):
        term = decomposition.contributions[embed, decomposition.components.index(f"L0H{head}")]
        separation[head] = (term[target].mean() - term[other_keys].mean()).item()
    assert max(separation, key=separation.get) == previous_head, (
        f"the layer-0 head whose output most separates induction targets on the key side should be the "
        f"previous-token head L0H{previous_head}; separations {separation}, previous-token scores {scores['previous_token'][0].tolist()}"
    )
    assert separation[previous_head] > 1.0, f"the key-side term barely separates induction targets: {separation}"


def test_the_induction_head_copies(model, circuit_heads):
    _, induction_head = circuit_heads
    score = copying_scores(model)[1, induction_head].item()
    assert score > 0.5, f"an induction head's OV circuit should copy tokens, but its copying score is {score:.3f}"
