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
    for split, (names, templates) in ioi.SPLITS.items():
        accuracy, logit_diff = [], []
        for seed in FRESH_SEEDS:
            prompts = ioi.ioi_prompts(300, names, torch.Generator().manual_seed(seed), templates)
            rows = torch.arange(300)
            with torch.no_grad():
                logits = ioi_model(prompts.tokens)[rows, prompts.end_pos]
            accuracy.append((logits.argmax(-1) == prompts.io_ids).float().mean().item())
            logit_diff.append((logits[rows, prompts.io_ids] - logits[rows, prompts.s_ids]).mean().item())
        for name, values, floor in ((f"{split}_accuracy", accuracy, 0.01), (f"{split}_logit_diff", logit_diff, 0.05)):
            fresh = statistics.fmean(values)
            assert within_stated_spread(fresh, stated[name], floor), (
                f"{name}: fresh seeds give {fresh:.3f}, card says {stated[name]}")
    assert stated["heldout_accuracy"][0] >= 0.95 and stated["heldout_logit_diff"][0] >= 2, "issue 13's acceptance bar"


def test_ioi_held_out_names_occur_in_training_only_in_copying_text():
    """In sampled training rows a held-out name sits only in a one-name sentence or in a sentence said twice."""
    tok = ioi.tokenizer()
    held_out, every_name = (set(tok.convert_tokens_to_ids(names)) for names in (ioi.NAMES_HELDOUT, ioi.ALL_NAMES))
    seen = 0
    for seed in range(5):
        for row in ioi.sample_batch(torch.Generator().manual_seed(seed), 256).tokens.tolist():
            row = [t for t in row if t != tok.pad_token_id]
            if not held_out & set(row):
                continue
            seen += 1
            one_name = len(every_name & set(row)) == 1
            said_twice = any(row[-2 * n : -n] == row[-n:] for n in range(5, len(row) // 2 + 1))
            assert one_name or said_twice, f"held-out name in an IOI-like training row: {tok.decode(row)}"
    assert seen > 100, "held-out names should occur in the copying text"


def _dense_pattern(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention ``[batch head query_pos key_pos]`` from q, k ``[batch pos head d_head]``."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    causal = torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * w + b


def test_ioi_head_classes_hold_on_fresh_seeds(ioi_model):
    """Independent route: attention read off the cache at positions found here, and path patching written out densely.

    The name movers sit in the last layer, so patching their queries changes nothing after them: the patched logits
    are the clean final residual stream plus the name movers' output change, through ln_final and W_U.
    """
    model, stated = ioi_model, figures("ioi-mini")
    movers, inhibition = ioi.HEAD_CLASSES["name_movers"], ioi.HEAD_CLASSES["s_inhibition"]
    last = model.cfg.n_layers - 1
    assert movers and all(layer == last for layer, _ in movers), f"name movers should sit in the last layer: {movers}"
    names, templates = ioi.SPLITS["heldout"]
    fresh: dict[str, list[float]] = {}
    for seed in FRESH_SEEDS:
        generator = torch.Generator().manual_seed(seed)
        prompts = ioi.ioi_prompts(100, names, generator, templates)
        corrupted = ioi.abc_prompts(prompts, names, generator)
        rows, end = torch.arange(100), prompts.end_pos
        io_pos = torch.tensor([row.tolist().index(io) for row, io in zip(prompts.tokens, prompts.io_ids.tolist())])
        s_pos = [[i for i, t in enumerate(row.tolist()) if t == s] for row, s in zip(prompts.tokens, prompts.s_ids.tolist())]
        s1_pos, s2_pos = torch.tensor([p[0] for p in s_pos]), torch.tensor([p[1] for p in s_pos])
        with torch.no_grad():
            _, clean = model.run_with_cache(prompts.tokens)
            _, source = model.run_with_cache(corrupted)

            def logit_diff(final_resid: torch.Tensor) -> float:
                logits = _layer_norm(final_resid, model.ln_final.w, model.ln_final.b) @ model.W_U + model.b_U
                return (logits[rows, end, prompts.io_ids] - logits[rows, end, prompts.s_ids]).mean().item()

            final = clean[f"blocks.{last}.hook_resid_post"]
            base = logit_diff(final)
            add = lambda key, value: fresh.setdefault(key, []).append(value)  # noqa: E731
            for layer, head in movers:
                pattern = clean["pattern", layer][rows, head, end]
                add(f"name mover L{layer}H{head}: attention END->IO", pattern[rows, io_pos].mean().item())
                change = (source["z", layer][:, :, head] - clean["z", layer][:, :, head]) @ model.W_O[layer, head]
                add(f"name mover L{layer}H{head}: direct path to logits", logit_diff(final + change) / base - 1)
            for layer, head in inhibition:
                add(f"S-inhibition L{layer}H{head}: attention END->S2", clean["pattern", layer][rows, head, end, s2_pos].mean().item())
            # every S-inhibition head's ABC output, added to the clean stream that feeds the name movers' queries only
            resid = clean[f"blocks.{last}.hook_resid_pre"].clone()
            for layer, head in inhibition:
                resid += (source["z", layer][:, :, head] - clean["z", layer][:, :, head]) @ model.W_O[layer, head]
            ln = model.blocks[last].ln1
            q = torch.einsum("bpm,hmd->bphd", _layer_norm(resid, ln.w, ln.b), model.W_Q[last]) + model.b_Q[last]
            pattern = _dense_pattern(q, clean["k", last])
            z = torch.einsum("bhqk,bkhd->bqhd", pattern, clean["v", last])
            heads = [head for _, head in movers]
            change = torch.einsum("bphd,hdm->bpm", (z - clean["z", last])[:, :, heads], model.W_O[last, heads])
            add("S-inhibition heads together: path via name-mover queries", logit_diff(final + change) / base - 1)
            add("name movers' END->IO attention, S-inhibition patched into queries", pattern[rows][:, heads][rows, :, end, io_pos].mean().item())
            for kind in ("duplicate_token", "induction"):
                for layer, head in ioi.HEAD_CLASSES[kind]:
                    title = kind.replace("_", "-")
                    at = clean["pattern", layer][rows, head, s2_pos]
                    add(f"{title} L{layer}H{head}: attention S2->S1", at[rows, s1_pos].mean().item())
                    add(f"{title} L{layer}H{head}: attention S2->after S1", at[rows, s1_pos + 1].mean().item())
    for name, values in fresh.items():
        mean = statistics.fmean(values)
        assert within_stated_spread(mean, stated[name], 0.03), f"{name}: fresh seeds give {mean:.3f}, card says {stated[name]}"
    for layer, head in movers:
        assert stated[f"name mover L{layer}H{head}: attention END->IO"][0] > 0.5, "a name mover attends from the end to the IO"
        assert stated[f"name mover L{layer}H{head}: direct path to logits"][0] < -0.1, "a name mover's direct path carries the answer"
    for layer, head in inhibition:
        assert stated[f"S-inhibition L{layer}H{head}: attention END->S2"][0] > 0.3, "an S-inhibition head attends from the end to S2"
    assert stated["S-inhibition heads together: path via name-mover queries"][0] < -0.2, "S-inhibition should steer the name movers"


def test_ioi_name_mover_copying_scores_from_dense_weights(ioi_model):
    """Wang et al.'s copying score by hand: embedding -> ln1 -> W_V, W_O -> ln_final -> W_U; is the name in the top 5?

    Only checked against the card: from the bare embedding the score is low for L2H3 (the card explains why); the
    copying claim rests on the in-context score below."""
    model, stated = ioi_model, figures("ioi-mini")
    ids = torch.tensor(ioi.tokenizer().convert_tokens_to_ids(ioi.ALL_NAMES))
    for layer, head in ioi.HEAD_CLASSES["name_movers"]:
        ln = model.blocks[layer].ln1
        with torch.no_grad():
            out = (_layer_norm(model.W_E[ids], ln.w, ln.b) @ model.W_V[layer, head] + model.b_V[layer, head]) @ model.W_O[layer, head]
            logits = _layer_norm(out, model.ln_final.w, model.ln_final.b) @ model.W_U + model.b_U
        score = (logits.topk(5, dim=-1).indices == ids[:, None]).any(-1).float().mean().item()
        card_value = stated[f"name mover L{layer}H{head}: copying score (names)"][0]
        assert abs(score - card_value) < 1e-3, f"L{layer}H{head}: copying score {score:.4f}, card says {card_value}"


def test_ioi_name_mover_in_context_copying_from_dense_math(ioi_model):
    """The same path fed the residual stream the head reads at the IO (embedding + earlier layers), recomputed by hand."""
    model, stated = ioi_model, figures("ioi-mini")
    names, templates = ioi.SPLITS["heldout"]
    for layer, head in ioi.HEAD_CLASSES["name_movers"]:
        scores = []
        for seed in FRESH_SEEDS:
            prompts = ioi.ioi_prompts(300, names, torch.Generator().manual_seed(seed), templates)
            io_pos = torch.tensor([row.tolist().index(io) for row, io in zip(prompts.tokens, prompts.io_ids.tolist())])
            with torch.no_grad():
                _, cache = model.run_with_cache(prompts.tokens)
                resid = cache[f"blocks.{layer}.hook_resid_pre"][torch.arange(300), io_pos]
                ln = model.blocks[layer].ln1
                out = (_layer_norm(resid, ln.w, ln.b) @ model.W_V[layer, head] + model.b_V[layer, head]) @ model.W_O[layer, head]
                logits = _layer_norm(out, model.ln_final.w, model.ln_final.b) @ model.W_U + model.b_U
            scores.append((logits.topk(5, dim=-1).indices == prompts.io_ids[:, None]).any(-1).float().mean().item())
        name = f"name mover L{layer}H{head}: copying score in context"
        assert within_stated_spread(statistics.fmean(scores), stated[name], 0.02), f"{name}: fresh {scores}, card {stated[name]}"
        assert statistics.fmean(scores) > 0.9, f"name mover L{layer}H{head} should copy the IO it reads: {scores}"


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
