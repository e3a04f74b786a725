"""Induction-head discovery on the embedded 2-layer attention-only model.

Finds previous-token heads in layer 0 and induction heads in layer 1 with the head detectors,
then checks the circuit that connects them: the K-composition between each layer-0 head and
each layer-1 head, against the random-matrix baseline. Besides the best head of each kind it
prints every head's score, since a model may split a role over several heads (the embedded
model has four induction heads and one clear previous-token head, L0H2, helped in part by two others). Head scores are measured on --seeds fresh
batches of repeated random tokens and printed as mean ± std. Writes CSV tables and heatmaps to
--out and prints the headline numbers.

    python analyses/induction_heads.py --out out/induction
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from interp_transformer import HookedTransformer
from interp_transformer.circuits import (
    all_composition_scores,
    detect_heads,
    detector_heatmap,
    head_scores_frame,
    random_composition_baseline,
)
from interp_transformer.circuits.head_detectors import repeated_tokens_for
from interp_transformer.toy.evaluation import format_spread


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="attn-only-2l-induction")
    parser.add_argument("--out", type=Path, default=Path("out/induction_heads"))
    parser.add_argument("--seeds", type=int, default=5, help="fresh token batches to measure the head scores on")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    model = HookedTransformer.from_pretrained(args.model)
    scores = detect_heads(model)
    head_scores_frame(scores).to_csv(args.out / "head_scores.csv", index=False)
    for kind in ("previous_token", "induction"):
        detector_heatmap(scores[kind], title=f"{kind} score per head").save(args.out / f"{kind}_heatmap.html")

    last = model.cfg.n_layers - 1
    prev_head = int(scores["previous_token"][0].argmax())
    ind_head = int(scores["induction"][last].argmax())
    k_comp = all_composition_scores(model, "K")[0, :, last]  # [layer-0 head, last-layer head]
    baseline = random_composition_baseline(model.cfg.d_model, model.cfg.d_head)
    pd.DataFrame(k_comp.numpy(), index=[f"L0H{h}" for h in range(model.cfg.n_heads)],
                 columns=[f"L{last}H{h}" for h in range(model.cfg.n_heads)]).to_csv(args.out / "k_composition.csv")
    detector_heatmap(k_comp, title=f"K-composition: layer-0 head (rows) into layer-{last} head (columns)").save(
        args.out / "k_composition.html"
    )
    per_seed = [detect_heads(model, repeated_tokens_for(model, seed=seed)) for seed in range(args.seeds)]
    prev = torch.tensor([seed_scores["previous_token"][0, prev_head].item() for seed_scores in per_seed])
    ind = torch.tensor([seed_scores["induction"][last, ind_head].item() for seed_scores in per_seed])
    # Every head's role, not just the best one: a model may split a role over several heads.
    prev_all = torch.stack([seed_scores["previous_token"][0] for seed_scores in per_seed]).mean(0)
    ind_all = torch.stack([seed_scores["induction"][last] for seed_scores in per_seed]).mean(0)
    headline = {
        "previous_token_head": f"L0H{prev_head}",
        "previous_token_score": prev.mean().item(),
        "previous_token_score_over_seeds": f"{format_spread(prev.mean().item(), prev.std().item())} ({args.seeds} seeds)",
        "induction_head": f"L{last}H{ind_head}",
        "induction_score": ind.mean().item(),
        "induction_score_over_seeds": f"{format_spread(ind.mean().item(), ind.std().item())} ({args.seeds} seeds)",
        "previous_token_score_every_layer_0_head": ", ".join(f"L0H{h} {v:.2f}" for h, v in enumerate(prev_all.tolist())),
        f"induction_score_every_layer_{last}_head": ", ".join(f"L{last}H{h} {v:.2f}" for h, v in enumerate(ind_all.tolist())),
        "k_composition_of_pair": k_comp[prev_head, ind_head].item(),
        f"k_composition_every_layer_0_head_into_L{last}H{ind_head}": ", ".join(
            f"L0H{h} {v:.2f}" for h, v in enumerate(k_comp[:, ind_head].tolist())),
        "k_composition_random_baseline": baseline,
    }
    for key, value in headline.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return headline


if __name__ == "__main__":
    main()
