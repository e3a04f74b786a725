"""Head scoring options (TransformerLens's exclude_bos, exclude_current_token, error_measure, and its normalisation).

Expected numbers are worked out by hand from TransformerLens's ``compute_head_attention_similarity_score``
(``"mul"``: sum(pattern * target) / sum(pattern) after zeroing excluded keys; ``"abs"``: 1 - mean
over query rows of the row's L1 distance) and its ``detect_head`` (one score per prompt, averaged).
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from interp_transformer import HookedTransformer
from interp_transformer.circuits import attention_patterns, induction_scores, induction_target, previous_token_target, score_heads

# One head, one prompt, three positions. Previous-token targets: (1, 0) and (2, 1).
PATTERN = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.6, 0.2]], dtype=torch.float64)
TARGET = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.bool)


def score(**options) -> float:
    return score_heads(PATTERN[None, None, None], TARGET, **options).item()


@pytest.mark.parametrize(
    "options, expected, why",
    [
        ({}, (0.5 + 0.6) / 2, "mass on target, mean over the 2 queries with a target"),
        ({"average_over": "all_queries"}, (0.5 + 0.6) / 3, "TransformerLens divides by all 3 query rows"),
        ({"average_over": "all_queries", "exclude_bos": True}, 0.6 / (0.5 + 0.8), "key 0 zeroed in pattern and total"),
        ({"average_over": "all_queries", "exclude_bos": True, "exclude_current_token": True}, 0.6 / 0.6, "key 0 and diagonal zeroed"),
        ({"average_over": "all_queries", "error_measure": "abs"}, 1 - (1.0 + 1.0 + 0.8) / 3, "1 - mean L1 row distance"),
        ({"error_measure": "abs"}, 1 - (1.0 + 0.8) / 2, "1 - mean L1 distance of the target queries"),
        ({"average_over": "all_queries", "error_measure": "abs", "exclude_bos": True}, 1 - (0 + 0.5 + 0.6) / 3, "column 0 left out of the distance"),
        ({"average_over": "all_queries", "error_measure": "abs", "exclude_current_token": True}, 1 - (0 + 0.5 + 0.6) / 3, "diagonal left out"),
    ],
)
def test_hand_worked_scores(options, expected, why):
    assert score(**options) == pytest.approx(expected, abs=1e-12), f"{options}: expected {expected} ({why})"


def test_all_queries_scores_each_prompt_then_averages_the_prompts():
    # Two prompts whose totals differ once BOS is excluded: the mean of the ratios is not the ratio of the sums.
    second = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    patterns = torch.stack([PATTERN, second])[None, :, None]  # [layer batch head_index query_pos key_pos]
    first_ratio, second_ratio = 0.6 / 1.3, 1.0 / 1.1
    actual = score_heads(patterns, TARGET, average_over="all_queries", exclude_bos=True).item()
    assert actual == pytest.approx((first_ratio + second_ratio) / 2, abs=1e-12), "TransformerLens averages per-prompt scores"


def test_a_head_attending_only_to_excluded_keys_has_no_score():
    on_bos = torch.zeros(3, 3, dtype=torch.float64)
    on_bos[:, 0] = 1
    actual = score_heads(on_bos[None, None, None], TARGET, average_over="all_queries", exclude_bos=True)
    assert actual.isnan().all(), "0 / 0 must show as nan (as in TransformerLens), not as a made-up number"


def test_model_scores_match_a_per_prompt_transcription_of_transformer_lens():
    model = HookedTransformer(tiny_config(dtype=torch.float64)).eval()
    x = torch.randint(3, model.cfg.d_vocab, (3, 7), generator=torch.Generator().manual_seed(2))
    tokens = torch.cat([torch.zeros(3, 1, dtype=torch.long), x, x], dim=1)
    patterns = attention_patterns(model, tokens)
    target = induction_target(tokens).to(torch.float64)
    for options in ({"exclude_bos": True}, {"exclude_current_token": True, "error_measure": "abs"}, {}):
        actual = induction_scores(model, tokens, average_over="all_queries", **options)
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                per_prompt = []
                for prompt in range(tokens.shape[0]):
                    pattern, wanted = patterns[layer, prompt, head].clone(), target[prompt]
                    if options.get("error_measure") == "abs":
                        diff = (pattern - wanted).abs()
                        diff[:, 0] *= not options.get("exclude_bos", False)
                        if options.get("exclude_current_token"):
                            diff.fill_diagonal_(0)
                        per_prompt.append(1 - diff.mean() * len(diff))
                        continue
                    if options.get("exclude_bos"):
                        pattern[:, 0] = 0
                    if options.get("exclude_current_token"):
                        pattern.fill_diagonal_(0)
                    per_prompt.append((pattern * wanted).sum() / pattern.sum())
                expected = torch.stack(per_prompt).mean()
                assert actual[layer, head].item() == pytest.approx(expected.item(), abs=1e-12), f"L{layer}H{head} with {options}"


def test_default_is_unchanged_by_the_options_machinery():
    patterns = PATTERN[None, None, None]
    assert score_heads(patterns, previous_token_target(torch.zeros(1, 3, dtype=torch.long))).item() == pytest.approx(0.55)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"error_measure": "l2"}, ValueError, r"error_measure must be one of \['mul', 'abs'\], got 'l2'"),
        ({"average_over": "queries"}, ValueError, r"average_over must be one of .*'all_queries'.*got 'queries'"),
        ({"exclude_bos": 1}, TypeError, "exclude_bos must be True or False, got int 1"),
        ({"exclude_current_token": "yes"}, TypeError, "exclude_current_token must be True or False"),
    ],
)
def test_bad_options_are_named(options, error, message):
    with pytest.raises(error, match=message):
        score(**options)
    model = HookedTransformer(tiny_config()).eval()
    with pytest.raises(error, match=message):
        induction_scores(model, **options)
