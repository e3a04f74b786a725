"""The model cards tell the truth: each claim is recomputed here, on seeds the cards never used, by independent code.

attn-only-2l-induction's claims are re-checked in test_induction_model.py.
"""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

from interp_transformer import HookedTransformer
from interp_transformer.toy import embedded_models, induction, ioi, modadd
from interp_transformer.toy.evaluation import CARD_SEEDS, parse_results_table
from interp_transformer.toy.words import IOI_NAMES_HELDOUT, IOI_NAMES_TRAIN

FRESH_SEEDS = tuple(range(2024, 2029))  # 5 seeds, disjoint from the cards' evaluation seeds
assert not set(FRESH_SEEDS) & set(CARD_SEEDS)


def card(name: str) -> str:
    return (embedded_models()[name] / "MODEL_CARD.md").read_text()


def figures(name: str) -> dict[str, tuple[float, float]]:
    parsed = parse_results_table(card(name))
    regenerate = f"python -m interp_transformer.toy.evaluation {name} --write"
    assert parsed, f"no results table in {name}'s card: regenerate it with {regenerate}"
    return parsed


def within_stated_spread(fresh: float, stated: tuple[float, float], floor: float) -> bool:
    """A 5-seed mean should land within 3 stated standard deviations of the stated mean (``floor`` for tiny spreads)."""
    mean, std = stated
    return abs(fresh - mean) <= max(3 * std, floor)


@pytest.fixture(scope="module")
def ioi_model() -> HookedTransformer:
    return HookedTransformer.from_pretrained("ioi-mini")


# ----------------------------------------------------------------------------- ioi-mini
def test_ioi_card_accuracy_and_logit_diff_hold_on_fresh_seeds(ioi_model):
    stated = figures("ioi-mini")
    for split, names in (("heldout", IOI_NAMES_HELDOUT), ("train_names", IOI_NAMES_TRAIN)):
        accuracy, logit_diff = [], []
        for seed in FRESH_SEEDS:
            prompts = ioi.ioi_prompts(300, names, torch.Generator().manual_seed(seed))
            rows = torch.arange(300)
            with torch.no_grad():
                logits = ioi_model(prompts.tokens)[rows, prompts.end_pos]
            accuracy.append((logits.argmax(-1) == prompts.io_ids).float().mean().item())
            logit_diff.append((logits[rows, prompts.io_ids] - logits[rows, prompts.s_ids]).mean().item())
        for name, values, floor in ((f"{split}_accuracy", accuracy, 0.01), (f"{split}_logit_diff", logit_diff, 0.05)):
            fresh = statistics.fmean(values)
            assert within_stated_spread(fresh, stated[name], floor), (
                f"{name}: fresh seeds give {fresh:.3f}, card says {stated[name]}")


def test_ioi_layer2_heads_attend_to_s2_and_lower_the_subjects_logit():
    """Independent route: folded weights, the cache's per-head results through the final LayerNorm, dotted with W_U."""
    model = HookedTransformer.from_pretrained("ioi-mini", fold_ln=True)
    stated = figures("ioi-mini")
    prompts = ioi.ioi_prompts(300, IOI_NAMES_TRAIN, torch.Generator().manual_seed(FRESH_SEEDS[0]))
    rows = torch.arange(300)
    with torch.no_grad():
        _, cache = model.run_with_cache(prompts.tokens)
        results = cache.stack_head_results(layer=3, apply_ln=True)[8:, rows, prompts.end_pos]  # [head batch d_model]
        names = ioi.tokenizer().convert_tokens_to_ids(IOI_NAMES_TRAIN + IOI_NAMES_HELDOUT)
        name_logits = results @ model.W_U[:, names]  # [head batch name]
        centred = name_logits - name_logits.mean(-1, keepdim=True)
    column = {token: i for i, token in enumerate(names)}
    s_col = torch.tensor([column[int(t)] for t in prompts.s_ids])
    second_s = [int((row == s).nonzero()[1]) for row, s in zip(prompts.tokens, prompts.s_ids)]
    for head in (1, 2, 3):
        to_s2 = cache["pattern", 2][rows, head, prompts.end_pos, second_s].mean().item()
        on_s = centred[head, rows, s_col].mean().item()
        assert to_s2 > 0.95, f"card says L2H{head} attends from the end to S2; it gives S2 {to_s2:.3f}"
        assert on_s < -0.5, f"card says L2H{head} lowers the subject's logit; its direct effect is {on_s:.3f}"
        assert within_stated_spread(to_s2, stated[f"L2H{head}_attention_end_to_S2 (train_names)"], 0.01)
        assert within_stated_spread(on_s, stated[f"L2H{head}_direct_effect_on_S_logit (train_names)"], 0.1)
    text = card("ioi-mini")
    assert "subject-suppression heads" in text and "not name movers" in text, "the card should name the heads for what they do"


# ----------------------------------------------------------------------------- modadd-1l
def modadd_test_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """The card's test split, rebuilt from its data description: all pairs a-major, permuted with seed 598, last 70%."""
    a, b = torch.cartesian_prod(torch.arange(113), torch.arange(113)).T
    order = torch.randperm(113 * 113, generator=torch.Generator().manual_seed(598))
    held_out = order[int(0.3 * 113 * 113):]
    return a[held_out], b[held_out]


def test_modadd_card_reports_the_exact_test_accuracy():
    """Counted through the tokenizer from text prompts, not through the recipe's code."""
    model = HookedTransformer.from_pretrained("modadd-1l")
    a, b = modadd_test_pairs()
    tokens = model.to_tokens([f"{x} {y} =" for x, y in zip(a.tolist(), b.tolist())])
    with torch.no_grad():
        logits = model(tokens)[:, -1]
    answers = model.to_tokens([str(z) for z in ((a + b) % 113).tolist()])[:, 0]
    wrong = int((logits.argmax(-1) != answers).sum())
    stated = figures("modadd-1l")["test_accuracy"]
    assert stated == (round(1 - wrong / len(a), 5), 0.0), f"{wrong} wrong of {len(a):,} test pairs; card says {stated}"
    assert f"({wrong} wrong of {len(a):,}), exact" in card("modadd-1l")
    assert stated[0] >= 0.999, f"the issue asks for >= 99.9% test accuracy, the card states {stated}"


def modadd_fft_analysis(model: HookedTransformer) -> tuple[list[int], float, float]:
    """Key frequencies (top frequency of >= 2% of live neurons), embedding share and neuron share, with a plain FFT."""
    a, b = torch.cartesian_prod(torch.arange(113), torch.arange(113)).T
    tokens = torch.stack([a + 3, b + 3, torch.full_like(a, 116)], dim=1)  # "=" is the last word
    acts = {}

    def keep(value, hook):
        acts["post"] = value[:, -1].detach()

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", keep)])
    grid = acts["post"].double().reshape(113, 113, -1)
    power = torch.fft.fft2(grid, dim=(0, 1)).abs().pow(2)  # [113 113 neuron], index k and 113-k are one frequency
    power[0, 0] = 0  # the mean is not variance
    folded = torch.minimum(torch.arange(113), 113 - torch.arange(113))  # DFT index -> frequency 0..56
    total = power.sum((0, 1))
    live = total > 1e-9 * total.max()
    own = torch.zeros(57, int(live.sum()), dtype=torch.float64)
    for i in range(113):
        for j in range(113):
            fa, fb = int(folded[i]), int(folded[j])
            if (fa, fb) != (0, 0) and (fa == fb or fa == 0 or fb == 0):
                own[max(fa, fb)] += power[i, j, live]
    top = own[1:].argmax(0) + 1
    key = [k for k in range(1, 57) if int((top == k).sum()) >= 0.02 * int(live.sum())]
    allowed = torch.isin(folded, torch.tensor([0, *key]))
    neuron_share = (power[allowed][:, allowed].sum() / power.sum()).item()
    embedding = torch.fft.rfft(model.W_E[3:116].detach().double(), dim=0).abs().pow(2).sum(-1)[1:]  # frequencies 1..56
    embedding_share = (embedding[[k - 1 for k in key]].sum() / embedding.sum()).item()
    return key, embedding_share, neuron_share


def test_modadd_card_key_frequencies_and_their_shares_match_a_plain_fft():
    key, embedding_share, neuron_share = modadd_fft_analysis(HookedTransformer.from_pretrained("modadd-1l"))
    stated = figures("modadd-1l")
    count = int(stated["key_frequency_count"][0])
    assert key == [int(stated[f"key_frequency_{i}"][0]) for i in range(count)], f"the FFT's key frequencies are {key}"
    assert abs(embedding_share - stated["embedding_power_in_key_frequencies"][0]) < 1e-4, embedding_share
    assert abs(neuron_share - stated["neuron_variance_in_key_frequencies"][0]) < 1e-4, neuron_share
    assert embedding_share >= 0.9 and neuron_share >= 0.9, f"the issue asks for >= 0.9 each: {embedding_share}, {neuron_share}"


def test_modadd_card_shows_the_training_curve_it_was_trained_with():
    """The card links an SVG regenerated from training.json, and its landmark table is the history's."""
    import json
    import xml.etree.ElementTree as ElementTree

    folder = embedded_models()["modadd-1l"]
    training = json.loads((folder / "training.json").read_text())
    assert f"]({modadd.CURVE_FILE})" in card("modadd-1l"), "the card should link the training-curve figure"
    svg = (folder / modadd.CURVE_FILE).read_text()
    assert svg == modadd.card_files(training)[modadd.CURVE_FILE], "regenerate the figure with the evaluation --write"
    lines = [e for e in ElementTree.fromstring(svg).iter() if e.tag.endswith("polyline")]
    assert len(lines) == 4, "train and test loss, train and test accuracy"
    assert all(len(line.get("points").split()) == len(training["history"]) for line in lines)
    grok = next(r for r in training["history"] if r["test_accuracy"] >= 0.999)
    assert f"| test accuracy first >= 99.9% (grokked) | {grok['step']:,} |" in card("modadd-1l")


def test_modadd_card_says_what_reproduces_and_how_it_differs_from_the_paper():
    text = card("modadd-1l")
    for needed in ("one thread", "use_deterministic_algorithms", "Not verified", "instead of 1e-3", "30% of all pairs",
                   "a retrain elsewhere is expected, not verified", "bit for bit"):
        assert needed in text, f"the reproducibility statement lacks {needed!r}"


# ----------------------------------------------------------------------------- every card
@pytest.mark.slow
@pytest.mark.parametrize("name", ["attn-only-2l-induction", "ioi-mini", "modadd-1l"])
def test_every_card_figure_regenerates_on_fresh_seeds(name):
    """The card is the evaluation helper's output: on other seeds every figure lands within its stated spread."""
    from interp_transformer.toy.evaluation import card_figures

    stated = figures(name)
    for figure in card_figures(name, FRESH_SEEDS):
        if figure.name not in stated:
            assert not figure.finite, f"{name}: {figure.name} is missing from the card"
            continue
        # exact figures are printed to 5 significant digits; sampled ones may drift a little with the data
        floor = 1e-4 * abs(figure.mean) if figure.exact else 0.02 * max(1.0, abs(stated[figure.name][0]))
        assert within_stated_spread(figure.mean, stated[figure.name], floor), (
            f"{name}: {figure.name} is {figure.formatted()} on fresh seeds, card says {stated[figure.name]}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["attn-only-2l-induction", "ioi-mini", "modadd-1l"])
def test_shipped_card_is_exactly_what_the_evaluation_helper_writes(name):
    """No hand-edited numbers: ``python -m interp_transformer.toy.evaluation NAME --write`` reproduces the card."""
    import json

    from interp_transformer.toy.evaluation import card_figures
    from interp_transformer.toy.recipes import all_recipes, model_card

    training = json.loads((embedded_models()[name] / "training.json").read_text())
    regenerated = model_card(all_recipes()[name], training, card_figures(name))
    assert regenerated == card(name), f"{name}'s card drifted from its recipe: rerun the command above"
