"""A small, general training loop for the embedded models, and ``python -m interp_transformer.toy.train NAME``.

It uses only the public model API: the forward's per-token loss, weighted by a mask that
says which next-token predictions the task scores.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from interp_transformer.model import HookedTransformer


class Batch(NamedTuple):
    tokens: Tensor  # [batch pos]
    loss_mask: Tensor  # [batch pos-1]: 1 where predicting the next token is part of the task


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    min_lr_fraction: float = 0.1
    grad_clip: float | None = 1.0
    eval_every: int = 500
    seed: int = 0
    threads: int | None = None  # torch.set_num_threads for the run (None: leave as is); CPU results depend on it
    deterministic: bool = False  # torch.use_deterministic_algorithms(True) for the run


@dataclass
class TrainResult:
    final_loss: float
    metrics: dict[str, float]
    seconds: float
    history: list[dict[str, float]]


def lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the peak."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    floor = settings.min_lr_fraction
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def masked_loss(model: HookedTransformer, batch: Batch, fwd_hooks: Sequence = ()) -> Tensor:
    """Mean next-token loss weighted by ``batch.loss_mask``; ``fwd_hooks`` run during the forward (e.g. to read patterns)."""
    per_token = model.run_with_hooks(batch.tokens, return_type="loss", loss_per_token=True, fwd_hooks=fwd_hooks)
    mask = batch.loss_mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum()


def train(
    model: HookedTransformer,
    sample_batch: Callable[[torch.Generator, int], Batch],
    settings: TrainSettings,
    evaluate: Callable[[HookedTransformer], dict[str, float]] | None = None,
    checkpoint_dir: Path | None = None,
    loss_fn: Callable[[HookedTransformer, Batch, int], Tensor] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """AdamW on freshly sampled batches; evaluates (and checkpoints) every ``eval_every`` steps.

    ``loss_fn(model, batch, step)`` (``step`` counts from 0, for losses with a schedule) defaults to the
    mean next-token loss over ``batch.loss_mask``. ``settings.threads`` and
    ``settings.deterministic`` hold only for the run: the caller's thread count and determinism come back after.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    if settings.deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        return _train(model, sample_batch, settings, evaluate, checkpoint_dir, loss_fn, log)
    finally:  # the thread count and determinism are process-wide: give the caller its own back
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(model, sample_batch, settings, evaluate, checkpoint_dir, loss_fn, log) -> TrainResult:
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)
    history: list[dict[str, float]] = []
    start, loss = time.perf_counter(), torch.tensor(float("nan"))
    model.train()
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings)
        batch = sample_batch(generator, settings.batch_size)
        loss = masked_loss(model, batch) if loss_fn is None else loss_fn(model, batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            record = {"step": step + 1, "loss": loss.item(), "seconds": time.perf_counter() - start}
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    record |= evaluate(model)
                model.train()
            history.append(record)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if checkpoint_dir is not None:
                model.save_pretrained(checkpoint_dir)
    model.eval()
    metrics = {k: v for k, v in history[-1].items() if k not in ("step", "loss", "seconds")} if history else {}
    return TrainResult(loss.item(), metrics, time.perf_counter() - start, history)


def main(argv: list[str] | None = None) -> int:
    from interp_transformer.toy.recipes import all_recipes, train_recipe

    parser = argparse.ArgumentParser(description="Retrain an embedded model from its recipe.")
    parser.add_argument("name", choices=sorted(all_recipes()))
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's shipped weights)")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's step count (for quick checks)")
    args = parser.parse_args(argv)
    train_recipe(all_recipes()[args.name], out=args.out, steps=args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
