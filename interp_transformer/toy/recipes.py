"""A recipe is a config, a tokenizer, a data sampler and an evaluation; ``train_recipe`` turns one into shipped weights."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from interp_transformer.config import TransformerConfig
from interp_transformer.model import HookedTransformer
from interp_transformer.toy.evaluation import CARD_SEEDS, Figure, results_table
from interp_transformer.toy.registry import WEIGHTS_DIR
from interp_transformer.toy.train import Batch, TrainSettings, train


@dataclass(frozen=True)
class Recipe:
    name: str
    config: TransformerConfig
    settings: TrainSettings
    build_tokenizer: Callable[[], object]
    sample_batch: Callable[[torch.Generator, int], Batch]
    # evaluate(model, generator) -> metrics; the tests call it with fresh seeds.
    evaluate: Callable[[HookedTransformer, torch.Generator], dict[str, float]]
    data_description: str
    # card_figures(model, seeds) -> every number the model card states, with its spread over seeds.
    card_figures: Callable[[HookedTransformer, Sequence[int]], list[Figure]]
    # measured facts about retraining and reproducibility, printed under Training; a callable gets training.json
    card_notes: str | Callable[[dict], str] = ""
    eval_seed: int = 12345
    # loss_fn(model, batch, step) -> the training loss; None: next-token loss over batch.loss_mask
    loss_fn: Callable[[HookedTransformer, Batch, int], torch.Tensor] | None = None
    # files the card links (e.g. a training-curve SVG) as {file name: text}, made from training.json only
    card_files: Callable[[dict], dict[str, str]] | None = None


def all_recipes() -> dict[str, Recipe]:
    """Every embedded model's recipe by name (imported on demand: they hold word lists and data code)."""
    from interp_transformer.toy import induction, ioi, modadd

    return {recipe.name: recipe for recipe in (induction.RECIPE, ioi.RECIPE, modadd.RECIPE)}


def train_recipe(recipe: Recipe, out: Path | None = None, steps: int | None = None) -> Path:
    """Train from scratch (seeded), save weights + tokenizer + model card, return the folder."""
    torch.manual_seed(recipe.settings.seed)
    settings = recipe.settings if steps is None else TrainSettings(**{**recipe.settings.__dict__, "steps": steps})
    model = HookedTransformer(recipe.config, tokenizer=recipe.build_tokenizer())
    eval_generator = lambda: torch.Generator().manual_seed(recipe.eval_seed)  # noqa: E731 - same eval data each time
    result = train(model, recipe.sample_batch, settings, evaluate=lambda m: recipe.evaluate(m, eval_generator()), loss_fn=recipe.loss_fn)
    out = WEIGHTS_DIR / recipe.name if out is None else Path(out)
    model.save_pretrained(out)
    training = {"steps": settings.steps, "final_loss": result.final_loss, "metrics": result.metrics,
                "train_seconds": round(result.seconds, 1), "torch": torch.__version__, "machine": platform.machine(),
                "threads": settings.threads or torch.get_num_threads(), "load_average": os.getloadavg()[0], "history": result.history}
    (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    with torch.no_grad():
        figures = recipe.card_figures(model, CARD_SEEDS)
    (out / "MODEL_CARD.md").write_text(model_card(recipe, training, figures))
    write_card_files(recipe, training, out)
    print(f"saved {recipe.name} to {out} after {result.seconds:.0f} s: {result.metrics}")
    return out


def write_card_files(recipe: Recipe, training: dict, folder: Path) -> None:
    """Write the files the card links (``recipe.card_files``), regenerated from ``training.json``."""
    for file_name, text in (recipe.card_files(training) if recipe.card_files else {}).items():
        (Path(folder) / file_name).write_text(text)


def model_card(recipe: Recipe, training: dict, figures: Sequence[Figure]) -> str:
    """The card: architecture and data from the recipe, training from ``training.json``, results measured over seeds."""
    cfg = recipe.config
    settings = TrainSettings(**{**recipe.settings.__dict__, "steps": training["steps"]})
    schedule = "a constant rate" if settings.min_lr_fraction == 1.0 else f"cosine decay to {settings.min_lr_fraction} of the peak"
    batch = "the full training set (batch_size=0)" if settings.batch_size == 0 else f"batch {settings.batch_size}"
    load = f", machine load average {training['load_average']:.1f} at the end" if "load_average" in training else ""
    card_notes = recipe.card_notes(training) if callable(recipe.card_notes) else recipe.card_notes
    notes = f"\n\n{card_notes}" if card_notes else ""
    return f"""# {recipe.name}

Embedded model shipped with interp_transformer, trained with the project's own code.

## Architecture
{cfg.n_layers} layer(s), d_model={cfg.d_model}, {cfg.n_heads} heads of d_head={cfg.d_head}, \
{"attention-only" if cfg.attn_only else f"d_mlp={cfg.d_mlp}, act_fn={cfg.act_fn}"}, \
normalization={cfg.normalization_type}, d_vocab={cfg.d_vocab}, n_ctx={cfg.n_ctx}.

## Data
{recipe.data_description}

## Training
AdamW (lr={settings.lr}, betas={settings.betas}, weight_decay={settings.weight_decay}), {settings.warmup_steps} warm-up steps \
then {schedule}, gradient clipping {settings.grad_clip}, {settings.steps} steps of {batch}, seed {settings.seed}. \
Took {training["train_seconds"]:.0f} s on {training["threads"]} CPU thread(s) with torch {training["torch"]}{load}.{notes}

## Results
Measured on the shipped weights. A value `mean ± std` is the mean and standard deviation over \
{len(CARD_SEEDS)} evaluation seeds ({CARD_SEEDS[0]}-{CARD_SEEDS[-1]}), with freshly sampled data for each seed \
(never trained on); an exact value depends only on the weights or on a fixed data set. Print these \
figures with `python -m interp_transformer.toy.evaluation {recipe.name}`; add `--write` to regenerate this card.

{results_table(figures)}

The test suite re-checks these figures on data from other seeds.

## Retrain
    python -m interp_transformer.toy.train {recipe.name}
"""
