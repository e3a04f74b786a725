"""ActivationCache analyses against TransformerLens 3.x on the same tiny random weights (opt-in: ``-m reference``).

Every residual-stream analysis (accumulated_resid, decompose_resid, stack_head_results, stack_neuron_results,
get_full_resid_decomposition, apply_ln_to_stack, logit_attrs ...) with its labels, for several layer /
mlp_input / apply_ln / pos_slice settings, on LayerNorm and LNPre models with and without MLPs. The cases
live in tl_comparisons.py, shared with benchmarks/cache_tl_parity.py.
"""

from __future__ import annotations

import os

import pytest
import torch
import tl_comparisons as tlc

pytestmark = [
    pytest.mark.reference,
    pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="session")
def transformer_lens():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return pytest.importorskip("transformer_lens")


@pytest.fixture(scope="module", params=tlc.ANALYSIS_MODELS, ids=lambda p: f"{p[0]}{'-attn-only' if p[1] else ''}")
def caches(request, transformer_lens):
    """(our model, TL model, our cache, TL cache, tokens) for one model kind, built once per module."""
    ours, tl = tlc.build_analysis_pair(*request.param)
    tokens = tlc.analysis_tokens()
    with torch.no_grad():
        logits, mine = ours.run_with_cache(tokens)
        tl_logits, theirs = tl.run_with_cache(tokens)
    assert tlc.mismatch(logits, tl_logits) is None, "the two models differ before any analysis: weights not copied?"
    return ours, tl, mine, theirs, tokens


def test_every_analysis_matches_transformer_lens(caches):
    ours, _, mine, theirs, tokens = caches
    cases = tlc.analysis_cases(has_mlp=not ours.cfg.attn_only)
    cases_compared = 0
    wrong = {}
    for name, case in cases.items():
        with torch.no_grad():
            problem = tlc.mismatch(case(mine, tokens), case(theirs, tokens))
        cases_compared += 1
        if problem:
            wrong[name] = problem
    with torch.no_grad():
        problem = tlc.mismatch(tlc.our_logit_attrs_batch_tokens(mine, tokens), tlc.their_logit_attrs_batch_tokens(theirs, tokens))
    if problem:
        wrong["logit_attrs [batch] tokens"] = problem
    assert cases_compared > 20, f"only {cases_compared} analysis cases ran"
    assert not wrong, f"analyses that differ from TransformerLens 3.x: {wrong}"


def test_compute_head_results_matches(caches):
    _, _, mine, theirs, _ = caches
    mine.compute_head_results()
    theirs.compute_head_results()
    for layer in range(mine.cfg.n_layers):
        assert tlc.mismatch(mine["result", layer], theirs["result", layer]) is None, f"hook_result of layer {layer}"


def test_run_with_cache_options_match(caches):
    ours, tl, _, _, tokens = caches
    with torch.no_grad():
        _, one_mine = ours.run_with_cache(tokens[:1], remove_batch_dim=True)
        _, one_theirs = tl.run_with_cache(tokens[:1], remove_batch_dim=True)
        _, sliced_mine = ours.run_with_cache(tokens, pos_slice=(1, 5))
        _, sliced_theirs = tl.run_with_cache(tokens, pos_slice=(1, 5))
    problem = tlc.mismatch(one_mine.accumulated_resid(apply_ln=True, return_labels=True),
                           one_theirs.accumulated_resid(apply_ln=True, return_labels=True))
    assert problem is None, f"accumulated_resid of a remove_batch_dim cache: {problem}"
    wrong = {name: p for name in sliced_mine if (p := tlc.mismatch(sliced_mine[name], sliced_theirs[name]))}
    assert not wrong, f"run_with_cache(pos_slice=(1, 5)) differs from TransformerLens: {wrong}"
    wanted = lambda name: "resid" in name or "pattern" in name  # noqa: E731
    _, grads_mine = ours.run_with_cache(tokens, return_type="loss", incl_bwd=True, names_filter=wanted)
    _, grads_theirs = tl.run_with_cache(tokens, return_type="loss", incl_bwd=True, names_filter=wanted)
    assert set(grads_mine) == set(grads_theirs.keys()), f"incl_bwd keys differ: {set(grads_mine) ^ set(grads_theirs.keys())}"
    wrong = {name: p for name in grads_mine if (p := tlc.mismatch(grads_mine[name], grads_theirs[name]))}
    assert not wrong, f"incl_bwd activations or gradients differ from TransformerLens: {wrong}"
