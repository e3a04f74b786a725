"""Recipe for ``modadd-1l``: one-layer modular addition (p = 113), after Nanda et al. (2023).

Input ``a b =``, target ``(a + b) mod p`` at the ``=`` position. Trained full-batch on a
fixed fraction of all pairs with strong weight decay, which makes the model learn a
Fourier-feature algorithm: its embedding concentrates on a handful of key frequencies.

Differences from the paper, so that retraining takes minutes on two CPU cores: half the
width (d_model 64, d_mlp 256), 60% of pairs for training instead of 30%, a larger
initialisation (0.1) and learning rate (3e-3). With these the model generalises within a
few hundred steps instead of grokking after thousands; weight decay then keeps
concentrating the embedding on the key frequencies.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.model import HookedTransformer
from interp_transformer.toy.evaluation import Figure
from interp_transformer.toy.recipes import Recipe
from interp_transformer.toy.tokenizer import build_word_tokenizer
from interp_transformer.toy.train import Batch, TrainSettings

P = 113
TRAIN_FRACTION = 0.6
DATA_SEED = 598
N_SPECIAL = 3  # <bos> <pad> <unk>
EQUALS_ID = N_SPECIAL + P

CONFIG = TransformerConfig(
    d_model=64, n_layers=1, n_heads=4, d_head=16, d_mlp=256, act_fn="relu", normalization_type=None, init_range=0.1,
    d_vocab=N_SPECIAL + P + 1, n_ctx=3, default_prepend_bos=False, seed=0, model_name="modadd-1l",
)


def all_pairs() -> Tensor:
    """Every ``[a, b, =, (a+b) mod p]`` as token ids, in a fixed shuffled order."""
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).T
    rows = torch.stack([a + N_SPECIAL, b + N_SPECIAL, torch.full_like(a, EQUALS_ID), (a + b) % P + N_SPECIAL], dim=1)
    return rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(DATA_SEED))]


def split() -> tuple[Tensor, Tensor]:
    rows = all_pairs()
    cut = int(TRAIN_FRACTION * len(rows))
    return rows[:cut], rows[cut:]


@functools.cache
def _train_batch() -> Batch:
    train_rows, _ = split()
    return Batch(train_rows, torch.ones(len(train_rows), 1))


def sample_batch(generator: torch.Generator, batch_size: int) -> Batch:
    """The whole training split every step (full-batch training; ``batch_size`` is ignored): rows ``[a, b, =, answer]``."""
    return _train_batch()


def answer_loss(model: HookedTransformer, batch: Batch) -> Tensor:
    """Cross-entropy of the answer at the ``=`` position; the model never sees the answer token."""
    logits = model(batch.tokens[:, :3])[:, -1]
    return torch.nn.functional.cross_entropy(logits.float(), batch.tokens[:, 3])


def evaluate(model: HookedTransformer, generator: torch.Generator | None = None) -> dict[str, float]:
    """Accuracy on the held-out pairs and how concentrated the embedding is in Fourier space."""
    _, test_rows = split()
    logits = model(test_rows[:, :3])[:, -1, N_SPECIAL : N_SPECIAL + P]
    accuracy = (logits.argmax(-1) == test_rows[:, 3] - N_SPECIAL).float().mean().item()
    power = fourier_power(model.W_E[N_SPECIAL : N_SPECIAL + P].detach())
    top = power.argsort(descending=True)[:KEY_FREQUENCY_COUNT]
    return {
        "test_accuracy": accuracy,
        "top_frequency_share": (power[top].sum() / power.sum()).item(),
        **{f"key_frequency_{i}": float(k + 1) for i, k in enumerate(top.sort().values.tolist())},  # frequencies start at 1
    }


KEY_FREQUENCY_COUNT = 6


def fourier_basis(p: int = P) -> Tensor:
    """Orthonormal real Fourier basis ``[p p]``: rows constant, cos 1, sin 1, cos 2, sin 2, ..."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * torch.pi * k * x / p), torch.sin(2 * torch.pi * k * x / p)]
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True)


def fourier_power(embedding: Tensor) -> Tensor:
    """Squared norm of an ``[p d_model]`` embedding in each frequency 1..p//2 (cos and sin together)."""
    coefficients = fourier_basis(embedding.shape[0]) @ embedding.double()
    per_row = coefficients.pow(2).sum(-1)[1:]
    return (per_row[0::2] + per_row[1::2]).float()



def card_figures(model: HookedTransformer, seeds: Sequence[int] = ()) -> list[Figure]:
    """Exact figures: the data are every pair (no sampling), so ``seeds`` is not used."""
    rows = all_pairs()
    train_rows, test_rows = split()
    correct = model(rows[:, :3])[:, -1, N_SPECIAL : N_SPECIAL + P].argmax(-1) == rows[:, 3] - N_SPECIAL
    n_train = len(train_rows)
    metrics = evaluate(model)
    figures = [
        Figure("training_split_loss", (answer_loss(model, _train_batch()).item(),),
               f"cross-entropy of the answer over the {n_train:,} training pairs", exact=True),
    ]
    splits = (("accuracy_all_pairs", correct), ("train_accuracy", correct[:n_train]), ("test_accuracy", correct[n_train:]))
    for label, hits in splits:
        figures.append(Figure(label, (hits.float().mean().item(),), "top-1 answer among the 113 residues", exact=True,
                              note=f"{int((~hits).sum())} wrong of {len(hits):,}"))
    figures.append(Figure("top_frequency_share", (metrics["top_frequency_share"],),
                          f"share of W_E's Fourier power in its top {KEY_FREQUENCY_COUNT} frequencies", exact=True))
    figures += [Figure(f"key_frequency_{i}", (metrics[f"key_frequency_{i}"],), "a top-power frequency of W_E (1-based)",
                       exact=True) for i in range(KEY_FREQUENCY_COUNT)]
    assert len(test_rows) == len(correct) - n_train
    return figures

RECIPE = Recipe(
    name="modadd-1l",
    config=CONFIG,
    settings=TrainSettings(
        steps=1500, batch_size=0, lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98), warmup_steps=10,
        min_lr_fraction=1.0, grad_clip=None, eval_every=500,
    ),
    build_tokenizer=lambda: build_word_tokenizer([str(i) for i in range(P)] + ["="]),
    sample_batch=sample_batch,
    evaluate=evaluate,
    card_figures=card_figures,
    card_notes=(
        "The shipped run shared the machine's 2 cores with other jobs (load average 4-8), so its time is inflated.\n\n"
        "What reproduces, as measured. Exactly, anywhere: the data (every pair, permuted with seed 598) and the "
        "initial weights (`torch.manual_seed(0)`). Bit for bit only on the same setup: with one thread "
        "(`torch.set_num_threads(1)`), torch 2.13.0+cpu and an AMD EPYC CPU with AVX-512, a retrain of the first 500 "
        "steps matched the shipped record at step 500 bit for bit (loss 0.0005631445092149079, Fourier share "
        "0.8505967855453491, key frequencies 3, 6, 31, 41, 43, 51); steps 501-1500 were not verified (a bounded "
        "check; the learning rate is constant after warm-up, so a 500-step run follows the same path). "
        "Not reproducible: with 2 threads the loss first differs at step 11 (4.741204 vs 4.741199, the "
        "floating-point summation order changes) and by step 100 it is 2.494 vs 2.079; a full 2-thread retrain (176 s "
        "on an idle 2-core machine) gave an equally good model (test accuracy 1.000, 97% of the embedding's Fourier "
        "power in 6 frequencies) with different key frequencies (10, 13, 29, 31, 41, 42). An independent one-thread "
        "retrain with the same torch version on another machine diverged from the shipped history by step 500: "
        "matrix kernels differ between CPUs, so the same thread count is not enough. Training is chaotic enough "
        "(weight decay 1.0; the loss went from 2.9e-06 at step 1000 to 0.0032 at step 1500) that a last-bit "
        "difference grows into different key frequencies."
    ),
    loss_fn=answer_loss,
    data_description=(
        f"All {P * P} pairs `a b =` with target `(a + b) mod {P}`, shuffled with seed {DATA_SEED}; the first "
        f"{TRAIN_FRACTION:.0%} train (full batch), the rest are the test set. Only the answer position is scored."
    ),
)
