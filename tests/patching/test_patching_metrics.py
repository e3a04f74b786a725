"""Metrics against hand computations; the answer-position fast path equals the full-logits path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from patching_helpers import ANSWER, WRONG, tiny_model, token_pair

from interp_transformer import patching


@pytest.fixture(scope="module")
def logits() -> torch.Tensor:
    return torch.randn(4, 6, 300, generator=torch.Generator().manual_seed(0))


def test_logit_diff(logits):
    answers, wrong = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    expected = torch.stack([logits[b, -1, answers[b]] - logits[b, -1, wrong[b]] for b in range(4)])
    per_prompt = patching.LogitDiff(answers, wrong, reduction="none")(logits)
    torch.testing.assert_close(per_prompt, expected)
    torch.testing.assert_close(patching.LogitDiff(answers, wrong)(logits), expected.mean())
    torch.testing.assert_close(patching.LogitDiff(answers, wrong, reduction="sum")(logits), expected.sum())


def test_positions_per_prompt(logits):
    positions = torch.tensor([0, 3, 5, 2])
    value = patching.LogitDiff(ANSWER, WRONG, positions=positions, reduction="none")(logits)
    expected = torch.stack([logits[b, positions[b], ANSWER] - logits[b, positions[b], WRONG] for b in range(4)])
    torch.testing.assert_close(value, expected)


def test_log_prob_and_prob(logits):
    log_probs = F.log_softmax(logits[:, 2], dim=-1)[:, ANSWER]
    torch.testing.assert_close(patching.AnswerLogProb(ANSWER, positions=2, reduction="none")(logits), log_probs)
    torch.testing.assert_close(patching.AnswerProb(ANSWER, positions=2)(logits), log_probs.exp().mean())


def test_loss_matches_the_models_loss():
    model = tiny_model()
    tokens, _ = token_pair(model)
    with torch.no_grad():
        logits, loss = model(tokens, return_type="both")
    torch.testing.assert_close(patching.NextTokenLoss(tokens)(logits), loss)
    per_prompt = patching.NextTokenLoss(tokens, reduction="none")(logits)
    assert per_prompt.shape == (4,)
    torch.testing.assert_close(per_prompt.mean(), loss)


def test_normalized_metric_is_one_on_clean_and_zero_on_corrupted():
    model = tiny_model()
    clean, corrupted = token_pair(model)
    with torch.no_grad():
        clean_logits, corrupted_logits = model(clean), model(corrupted)
    for base in (patching.LogitDiff(ANSWER, WRONG), lambda x: (x[:, -1, ANSWER] - x[:, -1, WRONG]).mean()):
        metric = patching.normalized_between(base, clean_logits, corrupted_logits)
        torch.testing.assert_close(metric(clean_logits), torch.tensor(1.0))
        torch.testing.assert_close(metric(corrupted_logits), torch.tensor(0.0))
    assert isinstance(
        patching.normalized_between(patching.LogitDiff(ANSWER, WRONG), clean_logits, corrupted_logits), patching.AnswerMetric
    )
    per_prompt = patching.normalized_between(patching.LogitDiff(ANSWER, WRONG, reduction="none"), clean_logits, corrupted_logits)
    torch.testing.assert_close(per_prompt(clean_logits), torch.ones(4))


def test_answer_metric_sweep_equals_the_full_logits_sweep():
    """The fast path unembeds only the answer positions; it must score the same as handing the metric all logits."""
    model = tiny_model()
    clean, corrupted = token_pair(model)
    _, cache = model.run_with_cache(clean)
    positions = torch.tensor([8, 7, 8, 5])
    answer_metric = patching.LogitDiff(ANSWER, WRONG, positions=positions)
    full = lambda logits: answer_metric(logits)  # noqa: E731 - a plain callable hides the AnswerMetric type
    fast = patching.get_act_patch_resid_mid(model, corrupted, cache, answer_metric, progress=False)
    slow = patching.get_act_patch_resid_mid(model, corrupted, cache, full, progress=False)
    torch.testing.assert_close(fast.values, slow.values, rtol=0, atol=1e-5)


def test_metric_input_checks(logits):
    with pytest.raises(ValueError, match="reduction"):
        patching.LogitDiff(1, 2, reduction="median")
    with pytest.raises(ValueError, match=r"\[batch=4\]"):
        patching.LogitDiff(torch.tensor([1, 2]), 3)(logits)
    with pytest.raises(ValueError, match="logits \\[batch pos d_vocab\\]"):
        patching.LogitDiff(1, 2)(logits[:, -1])


def test_answer_ids_are_checked_against_the_vocabulary_at_the_boundary(logits):
    last_id = logits.shape[-1] - 1
    expected = logits[:, -1, last_id] - logits[:, -1, 0]
    torch.testing.assert_close(patching.LogitDiff(last_id, 0, reduction="none", d_vocab=300)(logits), expected)
    with pytest.raises(ValueError, match=r"answer_tokens holds token id 300, outside the vocabulary: ids must be in \[0, d_vocab=300\)"):
        patching.LogitDiff(300, 0, d_vocab=300)  # known vocabulary: refused when built
    late = patching.LogitDiff(300, 0)  # unknown vocabulary: refused at the first call, before indexing
    with pytest.raises(ValueError, match="answer_tokens holds token id 300"):
        late(logits)
    with pytest.raises(ValueError, match="answer_tokens holds token id 300"):
        late.from_answer_logits(logits[:, -1])  # the sweeps' fast path checks too


def test_answer_ids_as_plain_lists_still_work(logits):
    expected = torch.stack([logits[b, -1, b + 1] - logits[b, -1, 9] for b in range(4)])
    torch.testing.assert_close(patching.LogitDiff([1, 2, 3, 4], [9, 9, 9, 9], reduction="none")(logits), expected)
