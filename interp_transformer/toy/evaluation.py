"""Model-card figures with their spread over evaluation seeds, so every number a card states can be recomputed.

A figure measured on sampled data is evaluated once per seed (fresh data each time) and reported
as mean ± standard deviation; a figure that depends only on the weights (or on a fixed data set
such as every modular-addition pair) is reported once and marked exact.

    python -m interp_transformer.toy.evaluation ioi-mini            # print the card's figures
    python -m interp_transformer.toy.evaluation ioi-mini --write    # regenerate its MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import torch

CARD_SEEDS = tuple(range(12345, 12355))  # 10 evaluation seeds; the tests re-check with other seeds


@dataclass(frozen=True)
class Figure:
    """One number a model card states: its per-seed values (one value when exact) and how it was measured."""

    name: str
    values: tuple[float, ...]
    how: str
    exact: bool = False
    note: str = ""  # shown after the value, e.g. "6 wrong of 12,769"

    @property
    def finite(self) -> tuple[float, ...]:
        """The values that exist: NaN stands for "none on this seed" (e.g. no repeat length qualifies)."""
        return tuple(value for value in self.values if math.isfinite(value))

    @property
    def mean(self) -> float:
        return statistics.fmean(self.finite) if self.finite else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.finite) if len(self.finite) > 1 else 0.0

    def formatted(self) -> str:
        notes = [self.note] if self.note else []
        if not self.finite:
            return f"none on any of {len(self.values)} seeds" if len(self.values) > 1 else "none"
        if len(self.finite) < len(self.values):
            notes.append(f"none on {len(self.values) - len(self.finite)} of {len(self.values)} seeds")
        note = f" ({'; '.join(notes)})" if notes else ""
        if self.exact:
            return f"{self.mean:.5g}{note}, exact"
        return f"{format_spread(self.mean, self.std)}{note}"


def format_spread(mean: float, std: float) -> str:
    """``mean ± std`` with the mean rounded to the second significant digit of the spread (0.737 ± 0.025)."""
    if std == 0 or not math.isfinite(std):
        return f"{mean:.4g} ± {std:.1g}"
    decimals = max(0, 1 - math.floor(math.log10(std)))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def results_table(figures: Sequence[Figure]) -> str:
    rows = "\n".join(f"| {f.name} | {f.formatted()} | {f.how} |" for f in figures)
    return f"| figure | value | measured on |\n|---|---|---|\n{rows}"


def parse_results_table(card: str) -> dict[str, tuple[float, float]]:
    """``{figure: (mean, std)}`` from a card's results table (std 0 for exact figures), for re-checking."""
    parsed = {}
    for line in card.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("figure", "---"):
            continue
        value = cells[1].split(" (")[0].split(",")[0]
        mean, _, std = value.partition(" ± ")
        try:
            parsed[cells[0]] = (float(mean), float(std) if std else 0.0)
        except ValueError:
            continue
    return parsed


def card_figures(name: str, seeds: Sequence[int] = CARD_SEEDS) -> list[Figure]:
    """Every figure of embedded model ``name``'s card, measured on its shipped weights."""
    from interp_transformer.model import HookedTransformer
    from interp_transformer.toy.recipes import all_recipes

    if len(seeds) < 2:
        raise ValueError(f"a spread needs at least 2 evaluation seeds, got {list(seeds)}; pass more seeds")
    recipes = all_recipes()
    if name not in recipes:
        raise ValueError(f"unknown embedded model {name!r}; choose one of {sorted(recipes)}")
    model = HookedTransformer.from_pretrained(name)
    with torch.no_grad():
        return recipes[name].card_figures(model, seeds)


def main(argv: list[str] | None = None) -> int:
    from interp_transformer.toy.recipes import all_recipes, model_card, write_card_files
    from interp_transformer.toy.registry import WEIGHTS_DIR

    parser = argparse.ArgumentParser(description="Print (or write into MODEL_CARD.md) an embedded model's card figures.")
    parser.add_argument("name", choices=sorted(all_recipes()))
    parser.add_argument("--seeds", type=int, default=len(CARD_SEEDS), help="number of evaluation seeds (at least 2)")
    parser.add_argument("--write", action="store_true", help="regenerate the shipped MODEL_CARD.md")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds {args.seeds}: a spread needs at least 2 evaluation seeds")
    figures = card_figures(args.name, tuple(range(CARD_SEEDS[0], CARD_SEEDS[0] + args.seeds)))
    print(results_table(figures))
    if args.write:
        folder = WEIGHTS_DIR / args.name
        training = json.loads((folder / "training.json").read_text())
        (folder / "MODEL_CARD.md").write_text(model_card(all_recipes()[args.name], training, figures))
        write_card_files(all_recipes()[args.name], training, folder)
        print(f"wrote {folder / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
