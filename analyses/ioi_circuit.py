"""The IOI circuit of ``ioi-mini``, recovered with path patching and shown the way Wang et al. (2022) show GPT-2's.

Works backwards from the logits, as Wang et al. do, on IOI prompts whose names and templates never
occur in an IOI training sentence (``--split heldout``, the default), corrupted to ABC prompts (IO, S1 and S2
replaced by three different names). Each step path-patches every head into one receiver set and
keeps the heads that move the IO-minus-S logit difference by more than ``--threshold`` of it:

1. **Name movers**: the heads whose direct path to the logits carries the answer, that attend
   from the end (END) to the IO more than to S, and that copy what they read there: their OV
   circuit puts the IO in its top 5 logits on at least ``--copying`` of the prompts when fed the
   residual stream at the IO (Wang et al.'s copying score, in context; the weights-only score, from
   the bare embedding, is printed too).
2. **S-inhibition heads**: the heads whose output, patched into the name movers' *queries* only,
   lowers the logit difference; evidence: END->S2 attention, and the name movers' attention moving
   from the IO back to S when the S-inhibition heads' ABC output reaches their queries.
3. **Duplicate-token and induction heads**: the heads whose output, patched into the S-inhibition
   heads' values, lowers the logit difference; at S2 a duplicate-token head attends to S1, an
   induction head to the token after S1.

Writes each path-patching grid as CSV to --out and prints the classes with their evidence, and
always the heads with the largest direct paths and where they look from END.

It reports honestly when a step finds nothing (a model without name movers stops at step 1).
The heads it finds on the shipped ``ioi-mini`` are the ones its model card names (``ioi.HEAD_CLASSES``).

    python analyses/ioi_circuit.py --out out/ioi_circuit
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from interp_transformer import HookedTransformer
from interp_transformer.toy import ioi
from interp_transformer.toy.ioi_heads import (
    attention,
    direct_effects,
    effects_through,
    group_effect_through,
    in_context_copy_score,
    ioi_run,
    label,
    name_copy_score,
    name_mover_attention_with_patched_queries,
)


def heads_below(effects: torch.Tensor, threshold: float) -> list[tuple[int, int]]:
    """Heads whose patched path lowers the logit difference by more than ``threshold`` of it, strongest first."""
    found = [divmod(int(i), effects.shape[1]) for i in effects.flatten().argsort()]
    return [head for head in found if effects[head] < -threshold]


def save_grid(values: torch.Tensor, path: Path) -> None:
    rows = [{"layer": layer, "head": head, "effect": values[layer, head].item()}
            for layer in range(values.shape[0]) for head in range(values.shape[1])]
    pd.DataFrame(rows).to_csv(path, index=False)


def find_circuit(model: HookedTransformer, n_prompts: int, split: str, threshold: float, copying: float, seed: int, out: Path) -> dict:
    names, templates = ioi.SPLITS[split]
    generator = torch.Generator().manual_seed(seed)
    run = ioi_run(model, ioi.ioi_prompts(n_prompts, names, generator, templates), names, generator)
    to_io, to_s1, to_s2 = (attention(run, "END", slot) for slot in ("IO", "S1", "S2"))

    direct = direct_effects(model, run)
    save_grid(direct, out / "path_heads_to_logits.csv")
    copies = {head: in_context_copy_score(model, head, run.prompts) for head in heads_below(direct, threshold)}
    name_movers = [head for head, copied in copies.items() if to_io[head] > to_s1[head] + to_s2[head] and copied >= copying]
    circuit = {"clean_logit_diff": round(run.clean_logit_diff, 3), "name_movers": [], "s_inhibition": [],
               "duplicate_token": [], "induction": []}
    # What carries the answer whatever its kind: a head that attends END->S2 here suppresses S instead of moving IO.
    circuit["largest_direct_paths"] = [
        {"head": label(head), "direct_effect": round(direct[head].item(), 3), "attention_END_to_IO": round(to_io[head].item(), 3),
         "attention_END_to_S1": round(to_s1[head].item(), 3), "attention_END_to_S2": round(to_s2[head].item(), 3),
         "copying_score_in_context": round(copies[head], 3)}
        for head in heads_below(direct, threshold)
    ]
    for head in name_movers:
        circuit["name_movers"].append({
            "head": label(head), "direct_effect": round(direct[head].item(), 3), "attention_END_to_IO": round(to_io[head].item(), 3),
            "attention_END_to_S": round((to_s1[head] + to_s2[head]).item(), 3), "copying_score": round(name_copy_score(model, head), 3),
            "copying_score_in_context": round(copies[head], 3),
        })
    if not name_movers:
        return circuit

    via_queries = effects_through(model, run, name_movers, "q")
    save_grid(via_queries, out / "path_heads_to_name_mover_queries.csv")
    s_inhibition = [head for head in heads_below(via_queries, threshold) if head[0] < min(layer for layer, _ in name_movers)]
    for head in s_inhibition:
        circuit["s_inhibition"].append({
            "head": label(head), "effect_via_name_mover_queries": round(via_queries[head].item(), 3),
            "attention_END_to_S2": round(to_s2[head].item(), 3), "attention_END_to_IO": round(to_io[head].item(), 3),
        })
    if not s_inhibition:
        return circuit
    circuit["s_inhibition_together_via_queries"] = round(group_effect_through(model, run, s_inhibition, name_movers, "q"), 3)
    circuit["name_mover_attention_when_s_inhibition_patched_into_queries"] = {
        key: round(value, 3) for key, value in name_mover_attention_with_patched_queries(model, run, s_inhibition, name_movers).items()
    }

    via_values = effects_through(model, run, s_inhibition, "v")
    save_grid(via_values, out / "path_heads_to_s_inhibition_values.csv")
    to_s1_from_s2, to_after_s1_from_s2 = attention(run, "S2", "S1"), attention(run, "S2", "S1", key_offset=1)
    for head in heads_below(via_values, threshold):
        kind = "duplicate_token" if to_s1_from_s2[head] >= to_after_s1_from_s2[head] else "induction"
        circuit[kind].append({
            "head": label(head), "effect_via_s_inhibition_values": round(via_values[head].item(), 3),
            "attention_S2_to_S1": round(to_s1_from_s2[head].item(), 3),
            "attention_S2_to_after_S1": round(to_after_s1_from_s2[head].item(), 3),
        })
    return circuit


def print_circuit(circuit: dict, split: str, n_prompts: int) -> None:
    print(f"IOI circuit of ioi-mini on {n_prompts} '{split}' prompts; ABC corruption; clean logit diff {circuit['clean_logit_diff']}")
    print("Effects: relative change of the IO-S logit difference when the head's path is patched (-1 = all of it).\n")
    print("Heads whose direct path to the logits carries the answer:")
    for row in circuit["largest_direct_paths"]:
        print(f"  {row['head']}: direct path {row['direct_effect']:+.2f}, END->IO {row['attention_END_to_IO']:.2f}, "
              f"END->S1 {row['attention_END_to_S1']:.2f}, END->S2 {row['attention_END_to_S2']:.2f}, "
              f"copying in context {row['copying_score_in_context']:.2f}")
    print("Name movers: attend END -> IO and copy it (direct path to the logits)")
    if not circuit["name_movers"]:
        print("  none: no head with a direct path attends from END to the IO more than to S and copies it; the search stops here")
    for row in circuit["name_movers"]:
        print(f"  {row['head']}: direct path {row['direct_effect']:+.2f}, END->IO {row['attention_END_to_IO']:.2f} "
              f"(END->S {row['attention_END_to_S']:.2f}), copying score {row['copying_score']:.2f} "
              f"(in context {row['copying_score_in_context']:.2f})")
    print("S-inhibition heads: attend END -> S2 and steer the name movers' queries")
    if circuit["name_movers"] and not circuit["s_inhibition"]:
        print("  none: no earlier head's path into the name movers' queries moves the logit difference")
    for row in circuit["s_inhibition"]:
        print(f"  {row['head']}: via name-mover queries {row['effect_via_name_mover_queries']:+.2f}, "
              f"END->S2 {row['attention_END_to_S2']:.2f} (END->IO {row['attention_END_to_IO']:.2f})")
    if "s_inhibition_together_via_queries" in circuit:
        moved = circuit["name_mover_attention_when_s_inhibition_patched_into_queries"]
        print(f"  together via the queries: {circuit['s_inhibition_together_via_queries']:+.2f}; name movers' END->IO "
              f"{moved['clean_IO']:.2f} -> {moved['patched_IO']:.2f}, END->S {moved['clean_S']:.2f} -> {moved['patched_S']:.2f}")
    for kind, where in (("duplicate_token", "S1"), ("induction", "the token after S1")):
        print(f"{kind.replace('_', '-').capitalize()} heads: at S2 attend to {where}; feed the S-inhibition heads' values")
        for row in circuit[kind]:
            print(f"  {row['head']}: via S-inhibition values {row['effect_via_s_inhibition_values']:+.2f}, "
                  f"S2->S1 {row['attention_S2_to_S1']:.2f}, S2->after S1 {row['attention_S2_to_after_S1']:.2f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ioi-mini", help="ioi-mini or a folder holding a retrained copy")
    parser.add_argument("--split", default="heldout", choices=sorted(ioi.SPLITS))
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--threshold", type=float, default=0.05, help="smallest relative effect a path must have")
    parser.add_argument("--copying", type=float, default=0.9, help="smallest in-context copying score of a name mover")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/ioi_circuit"))
    args = parser.parse_args(argv)
    if args.prompts < 2:
        parser.error(f"--prompts {args.prompts}: path patching needs at least 2 prompts")
    if not 0 <= args.threshold < 1:
        parser.error(f"--threshold {args.threshold}: a share of the logit difference, at least 0 and below 1")
    if not 0 <= args.copying <= 1:
        parser.error(f"--copying {args.copying}: a share of prompts, between 0 and 1")
    args.out.mkdir(parents=True, exist_ok=True)
    model = HookedTransformer.from_pretrained(args.model)
    circuit = find_circuit(model, args.prompts, args.split, args.threshold, args.copying, args.seed, args.out)
    print_circuit(circuit, args.split, args.prompts)
    return circuit


if __name__ == "__main__":
    main()
