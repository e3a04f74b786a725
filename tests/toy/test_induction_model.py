"""attn-only-2l-induction does induction for every repeat that fits its context, as its card says.

Everything here is recomputed on seeds the card never used, with code that shares nothing with the recipe's
evaluation: sequences are built row by row, losses come from a dense cross-entropy on the logits, and the
attention is read from ``run_with_cache``.
"""

from __future__ import annotations

import re
import statistics

import pytest
import torch
import torch.nn.functional as F

from interp_transformer import HookedTransformer
from interp_transformer.toy import embedded_models, induction
from interp_transformer.toy.evaluation import CARD_SEEDS, parse_results_table

FRESH_SEEDS = tuple(range(2024, 2029))  # 5 seeds, disjoint from the card's evaluation seeds
assert not set(FRESH_SEEDS) & set(CARD_SEEDS)
N_CTX = 64
LENGTHS = range(2, (N_CTX - 1) // 2 + 1)  # every len(x) for which <bos> x x fits: 2..31
ROWS = 100


def card() -> str:
    return (embedded_models()["attn-only-2l-induction"] / "MODEL_CARD.md").read_text()


def stated() -> dict[str, tuple[float, float]]:
    parsed = parse_results_table(card())
    assert parsed, "no results table in the card: python -m interp_transformer.toy.evaluation attn-only-2l-induction --write"
    return parsed


def within_stated_spread(fresh: float, claim: tuple[float, float], floor: float) -> bool:
    mean, std = claim
    return abs(fresh - mean) <= max(3 * std, floor)


def card_head(kind: str) -> int:
    """The head the card names for ``kind`` ("induction" in layer 1, "previous-token" in layer 0)."""
    layer = 1 if kind == "induction" else 0
    found = re.search(rf"best layer-{layer} head \(L{layer}H(\d) on every seed\)", card())
    assert found, f"the card should name its {kind} head as L{layer}H<n> on every seed"
    return int(found[1])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Thousands of small forwards: one thread is several times faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    return HookedTransformer.from_pretrained("attn-only-2l-induction")


def repeat_rows(length: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """``ROWS`` rows of ``<bos> prefix x x filler`` (64 tokens), each with its own prefix length; and where x starts."""
    generator = torch.Generator().manual_seed(seed)
    rows, starts = [], []
    for _ in range(ROWS):
        prefix = int(torch.randint(0, N_CTX - 2 * length, (1,), generator=generator))  # 0..63-2L words
        x = torch.randint(3, 256, (length,), generator=generator)
        after = torch.randint(3, 256, (N_CTX - 1 - prefix - 2 * length,), generator=generator)
        prefix_words = torch.randint(3, 256, (prefix,), generator=generator)
        rows.append(torch.cat([torch.tensor([0]), prefix_words, x, x, after]))
        starts.append(1 + prefix)
    return torch.stack(rows), starts


@pytest.fixture(scope="module")
def per_length(model) -> dict[int, tuple[list[float], list[torch.Tensor]]]:
    """For each len(x): per fresh seed, second-copy / first-copy loss and each layer-1 head's induction score."""
    measured = {}
    for length in LENGTHS:
        ratios, scores = [], []
        for seed in FRESH_SEEDS:
            tokens, starts = repeat_rows(length, seed * 100 + length)
            with torch.no_grad():
                logits, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
            losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")  # [row pos-1]
            first = torch.stack([losses[row, start : start + length - 1] for row, start in enumerate(starts)])
            second = torch.stack([losses[row, start + length : start + 2 * length - 1] for row, start in enumerate(starts)])
            ratios.append((second.mean() / first.mean()).item())
            pattern = cache["blocks.1.attn.hook_pattern"]  # [row head query key]
            attention = [pattern[row, :, q, q - length + 1] for row, start in enumerate(starts)
                         for q in range(start + length, start + 2 * length)]
            scores.append(torch.stack(attention).mean(0))  # [head]
        measured[length] = (ratios, scores)
    return measured


def test_repeated_copy_loss_is_below_half_the_first_for_every_length_from_3(per_length):
    too_high = {length: round(statistics.fmean(ratios), 3) for length, (ratios, _) in per_length.items()
                if length >= 3 and statistics.fmean(ratios) >= induction.RATIO_BELOW}
    assert not too_high, f"induction too weak (second/first copy loss >= 0.5) for len(x): {too_high}"


def test_card_states_the_loss_ratio_of_every_length(per_length):
    claims = stated()
    for length, (ratios, _) in per_length.items():
        claim = claims.get(f"repeat_loss_ratio_len_{length}")
        assert claim is not None, f"the card lacks repeat_loss_ratio_len_{length}"
        fresh = statistics.fmean(ratios)
        assert within_stated_spread(fresh, claim, 0.02), f"len(x)={length}: fresh seeds give {fresh:.4f}, card says {claim}"
    worst = max(statistics.fmean(ratios) for length, (ratios, _) in per_length.items() if length >= 3)
    assert within_stated_spread(worst, claims["worst_repeat_loss_ratio_len_3_up"], 0.03)


@pytest.mark.parametrize("length", [LENGTHS[0], LENGTHS[-1]])
def test_induction_head_attends_to_the_token_after_the_earlier_copy(per_length, length):
    fresh = torch.stack(per_length[length][1]).mean(0)[card_head("induction")].item()
    assert fresh > 0.5, f"the induction head pays only {fresh:.3f} to the induction target for len(x)={length}"
    claim = stated()[f"induction_score_len_{length}"]
    assert within_stated_spread(fresh, claim, 0.02), f"len(x)={length}: fresh seeds give {fresh:.4f}, card says {claim}"


def test_card_losses_and_head_scores_on_a_20_word_repeat(model):
    claims, induction_head, prev_head = stated(), card_head("induction"), card_head("previous-token")
    first, second, induction_attention, prev_attention = [], [], [], []
    for seed in FRESH_SEEDS:
        x = torch.randint(3, 256, (200, 20), generator=torch.Generator().manual_seed(seed))
        tokens = torch.cat([torch.zeros(200, 1, dtype=torch.long), x, x], dim=1)
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens)
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
        first.append(losses[:, 1:20].mean().item())
        second.append(losses[:, 21:].mean().item())
        queries = torch.arange(21, 41)  # second copy: the token after the earlier occurrence sits 19 back
        induction_attention.append(cache["blocks.1.attn.hook_pattern"][:, induction_head, queries, queries - 19].mean().item())
        queries = torch.arange(1, 41)
        prev_attention.append(cache["blocks.0.attn.hook_pattern"][:, prev_head, queries, queries - 1].mean().item())
    for name, values, floor in (("loss_first_half", first, 0.02), ("loss_second_half", second, 0.02),
                                ("induction_score", induction_attention, 0.01), ("prev_token_score", prev_attention, 0.01)):
        fresh = statistics.fmean(values)
        assert within_stated_spread(fresh, claims[name], floor), f"{name}: fresh seeds give {fresh:.4f}, card says {claims[name]}"


def longest_runs(tokens: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the longest run of ``tokens[i] == tokens[i + shift]`` and the ``i`` where it starts."""
    equal = (tokens[:, :-shift] == tokens[:, shift:]).long()
    run, best, best_start = torch.zeros(len(tokens), dtype=torch.long), torch.zeros(len(tokens), dtype=torch.long), \
        torch.zeros(len(tokens), dtype=torch.long)
    for i in range(equal.shape[1]):
        run = (run + 1) * equal[:, i]
        longer = run > best
        best, best_start = torch.where(longer, run, best), torch.where(longer, i - run + 1, best_start)
    return best, best_start


def test_training_rows_hold_repeats_of_every_length_anywhere():
    """Measure the sampler: a copy of x at distance d is a run of len(x) equal tokens at shift d (gap = d - len(x))."""
    tokens = torch.cat([induction.sample_batch(torch.Generator().manual_seed(seed), 64).tokens for seed in range(10)])
    adjacent_lengths, adjacent_starts, gapped = [], [], 0
    runs = {shift: longest_runs(tokens, shift) for shift in range(2, 64)}
    for row in range(len(tokens)):
        adjacent = [(shift, int(runs[shift][1][row])) for shift in range(2, 32) if runs[shift][0][row] >= shift]
        if adjacent:
            length, start = max(adjacent)
            adjacent_lengths.append(length)
            adjacent_starts.append(start)
        gapped += any(5 <= runs[shift][0][row] < shift <= runs[shift][0][row] + 8 for shift in range(6, 64))
    assert max(adjacent_lengths) == 31 and min(adjacent_lengths) <= 3, (
        f"adjacent repeats x x span len(x) {min(adjacent_lengths)}..{max(adjacent_lengths)}, not 2..31")
    assert min(adjacent_starts) == 1 and max(adjacent_starts) >= 50, (
        f"adjacent repeats start at positions {min(adjacent_starts)}..{max(adjacent_starts)}: not spread over the row")
    assert 0.3 * len(tokens) < len(adjacent_lengths) < len(tokens), f"{len(adjacent_lengths)} rows hold an adjacent x x"
    assert gapped > 0.1 * len(tokens), f"only {gapped} rows hold a copy of 5+ words after a gap of 1-8"
    text = card()
    assert "2-31 uniformly random words" in text and "Zipf" in text, "the card's Data section should describe the sampler"
