"""Reproduce the cards of the shipped sparse dictionaries, and show the demonstrated feature.

For each dictionary under ``interp_transformer/toy/saes`` (an SAE on attn-only-2l-induction's final
residual stream, a transcoder replacing modadd-1l's MLP) every card figure is measured again on
fresh data from the model's own training sampler, one batch per seed, and printed as mean ± std
next to the value the card states: explained variance, L0, dead features, the model's task loss
(the predictions its sampler's ``loss_mask`` scores: every next token for the induction model, the
answer at ``=`` for modadd-1l) clean, spliced and with the hook mean-ablated, and the loss
recovered. For the induction SAE the features that best mark "the token after a repeated token"
and its complement (fresh text) are searched for again from data (Youden's J over every feature),
their precision, recall and mean activation in and out of those positions are printed, and their
top-activating contexts and logit effects are written as feature dashboards.

    python analyses/sae_features.py --out out/sae_features
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from interp_transformer import HookedTransformer
from interp_transformer.sae import load_embedded, logit_effects, top_activating_contexts_in_corpus
from interp_transformer.sae.embedded import embedded_dictionaries
from interp_transformer.sae.embedded_card import FEATURE_LABELS, SAE_CARD_SEEDS, SEARCH_SEED, SEARCH_SEQUENCES, card_figures, feature_rows, find_feature, sample_tokens
from interp_transformer.toy.evaluation import parse_results_table
from interp_transformer.vis import feature_dashboard


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/sae_features"))
    parser.add_argument("--seeds", type=int, default=len(SAE_CARD_SEEDS), help="evaluation seeds (at least 2), from the card's first")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = tuple(range(SAE_CARD_SEEDS[0], SAE_CARD_SEEDS[0] + args.seeds))
    result: dict = {}
    rows = []
    for name, folder in embedded_dictionaries().items():
        training = json.loads((folder / "training.json").read_text())
        features = training["features"]  # label -> the feature the recipe's search found
        sae = load_embedded(name)
        model = HookedTransformer.from_pretrained(training["recipe"]["model"]).eval()
        with torch.no_grad():
            figures = card_figures(model, sae, seeds, features)
        stated = parse_results_table((folder / "SAE_CARD.md").read_text())
        print(f"\n== {name}: {sae.cfg.architecture} k={sae.cfg.k}, d_sae={sae.cfg.d_sae}, reads {sae.cfg.hook_name}"
              + (f", writes {sae.cfg.hook_name_out}" if sae.cfg.hook_name_out else ""))
        for figure in figures:
            card = stated.get(figure.name)
            print(f"  {figure.name:44s} {figure.formatted():20s} card: {f'{card[0]:.4g} ± {card[1]:.2g}' if card else 'not stated'}")
            result[f"{name}/{figure.name}"] = figure.mean
            result[f"{name}/{figure.name}_over_seeds"] = figure.formatted()
            rows.append({"dictionary": name, "figure": figure.name, "mean": figure.mean, "std": figure.std, "card_mean": card[0] if card else None})
        result[f"{name}/model_matches_training"] = training["model_sha256"] == _model_sha256(training["recipe"]["model"])
        for label, feature in features.items():
            result |= _demonstrate(name, model, sae, label, feature, args.out)
    pd.DataFrame(rows).to_csv(args.out / "card_figures.csv", index=False)
    return result


def _demonstrate(name: str, model: HookedTransformer, sae, label: str, feature: int, out: Path) -> dict:
    """Search the feature again on the search seed's data, print what it does, and write its dashboard."""
    tokens = sample_tokens(model.cfg.model_name, SEARCH_SEQUENCES, SEARCH_SEED)
    with torch.no_grad():
        found = find_feature(*feature_rows(model, sae, tokens, label))
    print(f"  `{label}` ({FEATURE_LABELS[label][1]}): the search picks feature {found}, the card names {feature}")
    contexts = top_activating_contexts_in_corpus(model, tokens[:128], sae, k=8, features=[found], progress=False)
    logits = logit_effects(model, sae, [found], k=8)
    title = f"{name}: feature {found} ({label})"
    feature_dashboard(contexts, found, logits=logits, vocab=model, title=title).save(out / f"{name}_{label}_feature.html")
    return {f"{name}/{label}_feature": found, f"{name}/{label}_feature_in_card": feature}


def _model_sha256(model_name: str) -> str:
    from interp_transformer.sae.embedded_recipes import model_sha256

    return model_sha256(model_name)


if __name__ == "__main__":
    main()
