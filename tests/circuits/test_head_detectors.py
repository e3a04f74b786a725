"""Head detectors: targets on hand-worked token sequences, 1.0 for perfect heads, and clear errors for unusable input."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import tiny_config
from interp_transformer import HookedTransformer
from interp_transformer.circuits import (
    detect_heads,
    duplicate_token_scores,
    duplicate_token_target,
    first_token_scores,
    first_token_target,
    head_scores_frame,
    induction_scores,
    induction_target,
    pattern_scores,
    previous_token_scores,
    previous_token_target,
    repeated_tokens_for,
)

DETECTORS = {
    "previous_token": (previous_token_scores, previous_token_target),
    "first_token": (first_token_scores, first_token_target),
    "duplicate_token": (duplicate_token_scores, duplicate_token_target),
    "induction": (induction_scores, induction_target),
}


def perfect_head_hook(target: torch.Tensor, head: int):
    """Overwrite one head's pattern so every query with a target attends only (and evenly) to its target keys."""

    def hook(pattern: torch.Tensor, hook) -> torch.Tensor:
        weights = target.to(pattern.dtype)
        per_row = weights.sum(-1, keepdim=True)
        pattern = pattern.clone()
        pattern[:, head] = torch.where(per_row > 0, weights / per_row.clamp(min=1), pattern[:, head])
        return pattern

    return hook


def test_targets_on_a_hand_worked_sequence():
    tokens = torch.tensor([[5, 6, 5, 7, 6, 5]])
    expected_keys = {
        previous_token_target: {1: [0], 2: [1], 3: [2], 4: [3], 5: [4]},
        first_token_target: {q: [0] for q in range(1, 6)},
        duplicate_token_target: {2: [0], 4: [1], 5: [0, 2]},
        # The key after each earlier occurrence of the query's token.
        induction_target: {2: [1], 4: [2], 5: [1, 3]},
    }
    for target_fn, rows in expected_keys.items():
        target = target_fn(tokens)[0]
        assert target.shape == (6, 6)
        actual = {q: target[q].nonzero().flatten().tolist() for q in range(6) if target[q].any()}
        assert actual == rows, f"{target_fn.__name__} on {tokens.tolist()}"


@pytest.mark.parametrize("name", list(DETECTORS))
def test_a_perfect_head_scores_one(name):
    scores_fn, target_fn = DETECTORS[name]
    model = HookedTransformer(tiny_config()).eval()
    tokens = repeated_tokens_for(model, batch=4, repeat_len=8)
    layer, head = 1, 2
    with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_pattern", perfect_head_hook(target_fn(tokens), head))]):
        scores = scores_fn(model, tokens)
    assert scores.shape == (2, 4)
    assert scores[layer, head].item() == pytest.approx(1.0, abs=1e-6), f"a perfect {name} head should score 1.0"
    others = scores.clone()
    others[layer, head] = 0
    assert others.max().item() < 0.5, f"random heads should score far below a perfect {name} head: {scores}"


def test_user_supplied_pattern_and_uniform_attention():
    model = HookedTransformer(tiny_config()).eval()
    tokens = torch.randint(0, 300, (3, 10), generator=torch.Generator().manual_seed(0))
    two_back = torch.ones(10, 10, dtype=torch.bool).tril(-2).triu(-2)
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", perfect_head_hook(two_back.expand(3, 10, 10), 1))]):
        scores = pattern_scores(model, tokens, two_back)
    assert scores[0, 1].item() == pytest.approx(1.0, abs=1e-6), "a perfect two-back head should score 1.0 on a user pattern"

    def uniform(pattern, hook):
        return torch.ones_like(pattern).tril() / torch.arange(1, 11)[:, None]

    with model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"), uniform)]):
        scores = previous_token_scores(model, tokens)
    expected = sum(1 / (q + 1) for q in range(1, 10)) / 9
    torch.testing.assert_close(scores, torch.full((2, 4), expected), msg="uniform attention puts 1/(q+1) on the previous token")


def test_detect_heads_runs_every_detector_and_frames_the_result():
    model = HookedTransformer(tiny_config()).eval()
    tokens = repeated_tokens_for(model, batch=2, repeat_len=6)
    scores = detect_heads(model, tokens)
    assert list(scores) == ["previous_token", "first_token", "duplicate_token", "induction"]
    for name, (scores_fn, _) in DETECTORS.items():
        torch.testing.assert_close(scores[name], scores_fn(model, tokens), msg=f"detect_heads and {scores_fn.__name__} disagree")
    frame = head_scores_frame(scores)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 8
    assert list(frame.columns) == ["layer", "head", "label", *scores]
    row = frame[frame.label == "L1H3"].iloc[0]
    assert (row["layer"], row["head"]) == (1, 3)
    assert row.induction == pytest.approx(scores["induction"][1, 3].item())


def test_generated_sequences_start_with_bos_and_avoid_special_tokens(bpe_tokenizer):
    model = HookedTransformer(tiny_config(), tokenizer=bpe_tokenizer)
    tokens = repeated_tokens_for(model, batch=3, repeat_len=5)
    bos = bpe_tokenizer.bos_token_id
    assert tokens.shape == (3, 11)
    assert bool((tokens[:, 0] == bos).all()), "sequences should start with BOS when the model prepends one"
    assert not bool(torch.isin(tokens[:, 1:], torch.tensor(bpe_tokenizer.all_special_ids)).any())
    assert torch.equal(tokens[:, 1:6], tokens[:, 6:]), "the second half repeats the first"
    assert torch.equal(tokens, repeated_tokens_for(model, batch=3, repeat_len=5)), "generation should be seeded"


# ------------------------------------------------------------------ bad input
def test_inputs_too_short_to_contain_a_repeat_are_refused():
    model = HookedTransformer(tiny_config()).eval()
    no_repeat = torch.arange(10).unsqueeze(0)
    for scores_fn in (induction_scores, duplicate_token_scores):
        with pytest.raises(ValueError, match="contains no repeated token"):
            scores_fn(model, no_repeat)
    with pytest.raises(ValueError, match="at least 2 positions"):
        previous_token_scores(model, torch.tensor([[3]]))
    with pytest.raises(ValueError, match="at least 2 to contain a repeat"):
        repeated_tokens_for(model, repeat_len=1)
    with pytest.raises(ValueError, match=r"repeat_len=30 does not fit twice in n_ctx=48 \(at most 24\)"):
        repeated_tokens_for(model, repeat_len=30)


def test_bad_targets_and_scores_are_named():
    model = HookedTransformer(tiny_config()).eval()
    tokens = torch.randint(0, 300, (2, 6))
    with pytest.raises(ValueError, match=r"target of shape \(5, 5\) does not fit patterns of shape \(2, 2, 4, 6, 6\)"):
        pattern_scores(model, tokens, torch.ones(5, 5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pattern_scores(model, tokens, torch.full((6, 6), 2.0))
    with pytest.raises(ValueError, match="target is empty"):
        pattern_scores(model, tokens, torch.zeros(6, 6))
    with pytest.raises(ValueError, match="integer tensor"):
        induction_scores(model, torch.ones(2, 6))
    with pytest.raises(ValueError, match="one shape"):
        head_scores_frame({"a": torch.zeros(2, 4), "b": torch.zeros(3, 4)})
