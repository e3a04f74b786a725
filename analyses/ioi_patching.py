"""Indirect object identification: activation patching, path patching and attribution patching.

On the embedded ``ioi-mini`` model by default (or ``--model gpt2`` where its weights can be had:
Wang et al. 2022 report name-mover heads 9.6, 9.9 and 10.0 there). Clean prompts name the
subject twice ("When Mary and John went to the store, John gave a drink to" -> " Mary");
corrupted prompts name the indirect object in the second clause instead, which flips the answer.
The metric is the IO-minus-S logit difference, normalised to clean = 1, corrupted = 0.

Writes each result as CSV and HTML heatmap to --out and prints the headline numbers: where the
residual stream carries the answer, the heads whose output restores it, the heads whose direct
path to the logits restores it and where they look from the end (S2, IO or S1), and how well
attribution patching predicts the real head patching.

On ``ioi-mini`` the output of one head, the duplicate-token head L0H0, restores the whole logit
difference by itself: with S2 renamed to the IO, nothing marks the subject as repeated, and S2 is
where L0H0 reads the repeat. The heads with the largest direct paths are the name movers, which
attend from the end to the IO (see analyses/ioi_circuit.py for the full circuit). Attribution
patching tracks this head patching poorly here (correlation ~0.2): L0H0's effect is all-or-nothing
(its attention and the S-inhibition heads' attention saturate), which a first-order estimate
cannot follow. On the IO/S swap of tests/patching it tracks well (r > 0.85).

    python analyses/ioi_patching.py --out out/ioi
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from interp_transformer import HookedTransformer
from interp_transformer.patching import (
    LogitDiff,
    attribution_patching,
    get_act_patch_attn_head_out_all_pos,
    get_act_patch_resid_pre,
    normalized_between,
)
from interp_transformer.patching.path import path_patch_heads
from interp_transformer.toy.words import IOI_NAMES_TRAIN

TEMPLATE = "When {io} and {s} went to the store, {s} gave a drink to"


def ioi_pairs(model: HookedTransformer, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean and corrupted tokens, IO ids and S ids for ``n`` random name pairs that are single tokens."""
    names = [name for name in IOI_NAMES_TRAIN if _is_single_token(model, " " + name)]
    generator = torch.Generator().manual_seed(seed)
    clean_texts, corrupted_texts, io_ids, s_ids = [], [], [], []
    for _ in range(n):
        io, s = (names[i] for i in torch.randperm(len(names), generator=generator)[:2].tolist())
        text = TEMPLATE.format(io=io, s=s)
        clean_texts.append(text)
        corrupted_texts.append(text.replace(f", {s} gave", f", {io} gave"))
        io_ids.append(model.to_single_token(" " + io))
        s_ids.append(model.to_single_token(" " + s))
    return model.to_tokens(clean_texts), model.to_tokens(corrupted_texts), torch.tensor(io_ids), torch.tensor(s_ids)


def _is_single_token(model: HookedTransformer, text: str) -> bool:
    try:
        model.to_single_token(text)
        return True
    except ValueError:
        return False


def top_heads(values: torch.Tensor, k: int = 3) -> list[tuple[str, float]]:
    n_heads = values.shape[-1]
    top = values.flatten().topk(k)
    return [(f"L{i // n_heads}H{i % n_heads}", round(v, 3)) for i, v in zip(top.indices.tolist(), top.values.tolist())]


def attention_from_end(
    model: HookedTransformer, cache, tokens: torch.Tensor, io_ids: torch.Tensor, s_ids: torch.Tensor, heads: list[str]
) -> dict[str, dict[str, float]]:
    """For each head ``"L{l}H{h}"``: mean attention from the last token to S2 (the subject's second mention), IO and S1."""
    rows = torch.arange(len(tokens))
    s_mask = (tokens == s_ids[:, None]).int()
    where = {
        "S2": (s_mask * (s_mask.cumsum(-1) == 2)).argmax(-1),
        "IO": (tokens == io_ids[:, None]).int().argmax(-1),
        "S1": s_mask.argmax(-1),
    }
    looks = {}
    for label in heads:
        layer, head = (int(part) for part in label[1:].split("H"))
        pattern = cache["pattern", layer][rows, head, -1]  # [batch key_pos]: from the last token
        looks[label] = {name: round(pattern[rows, pos].mean().item(), 3) for name, pos in where.items()}
    return looks


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ioi-mini")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the name pairs")
    parser.add_argument("--out", type=Path, default=Path("out/ioi_patching"))
    args = parser.parse_args(argv)
    if args.prompts < 2:
        parser.error(f"--prompts {args.prompts}: correlations and patching need at least 2 prompts")
    args.out.mkdir(parents=True, exist_ok=True)

    model = HookedTransformer.from_pretrained(args.model)
    clean, corrupted, io_ids, s_ids = ioi_pairs(model, args.prompts, args.seed)
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean)
        corrupted_logits = model(corrupted)
    logit_diff = LogitDiff(io_ids, s_ids)
    metric = normalized_between(logit_diff, clean_logits, corrupted_logits)

    results = {
        "resid_pre": get_act_patch_resid_pre(model, corrupted, clean_cache, metric, progress=False),
        "head_out": get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric, progress=False),
        "path_heads_to_logits": path_patch_heads(model, corrupted, clean, metric, progress=False),
    }
    attribution = attribution_patching(model, clean, corrupted, metric).estimate("z", axes=("layer", "head_index"))
    for name, result in results.items():
        result.to_dataframe().to_csv(args.out / f"{name}.csv", index=False)
        result.heatmap(title=name).save(args.out / f"{name}.html")
    correlation = torch.corrcoef(torch.stack([attribution.values.flatten(), results["head_out"].values.flatten()]))[0, 1]
    resid = results["resid_pre"].values
    headline = {
        "clean_logit_diff": logit_diff(clean_logits).item(),
        "corrupted_logit_diff": logit_diff(corrupted_logits).item(),
        "resid_pre_top_cells": [(f"layer {i // resid.shape[1]}", f"pos {i % resid.shape[1]}") for i in resid.flatten().topk(3).indices.tolist()],
        "heads_by_output_patching": top_heads(results["head_out"].values),
        "heads_by_path_to_logits": top_heads(results["path_heads_to_logits"].values),
        "path_heads_attention_from_end": attention_from_end(
            model, clean_cache, clean, io_ids, s_ids, [head for head, _ in top_heads(results["path_heads_to_logits"].values)]
        ),
        "attribution_vs_activation_correlation": round(correlation.item(), 3),
    }
    for key, value in headline.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return headline


if __name__ == "__main__":
    main()
