"""Fourier analysis over Z_p for the modular-addition model (Nanda et al. 2023), used by its card and analyses.

A grokked model computes ``(a + b) mod p`` with a few *key frequencies* k: it embeds each number
as ``cos(2 pi k a / p)``, ``sin(2 pi k a / p)``, and its ReLU neurons respond to products of those
waves. Here the key frequencies are named from the neurons (each live neuron votes for the frequency
that explains most of its activation variance); the embedding and the neurons are then checked
against that set independently:

- ``embedding_share``: the share of the number embeddings' (non-constant) Fourier power in the key frequencies;
- ``neuron_variance_share``: the share of all neurons' activation variance over every pair (a, b) that
  lies in 2D Fourier terms built only from key frequencies (cos/sin k a, cos/sin k b and their products).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# A frequency is key when it is the top frequency of at least this share of the live neurons.
KEY_NEURON_SHARE = 0.02


def fourier_basis(p: int) -> Tensor:
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


def frequency_power_2d(activations: Tensor) -> Tensor:
    """``[p p n]`` activations over (a, b) -> ``[f f n]`` power of the centred activations per frequency pair.

    Entry ``[i, j]`` sums the squared 2D Fourier coefficients whose a-wave has frequency i and b-wave
    frequency j (0 = constant), so frequency pairs ``(0, k)``, ``(k, 0)``, ``(k, k)`` hold a neuron's
    response to frequency k alone.
    """
    p = activations.shape[0]
    basis = fourier_basis(p)
    centred = activations.double() - activations.double().mean((0, 1))
    coefficients = torch.einsum("ia,abn,jb->ijn", basis, centred, basis).pow(2)
    frequency = torch.tensor([0] + [k for k in range(1, p // 2 + 1) for _ in range(2)])
    n_freq = p // 2 + 1
    by_a = torch.zeros(n_freq, p, coefficients.shape[-1], dtype=torch.float64).index_add_(0, frequency, coefficients)
    return torch.zeros(n_freq, n_freq, coefficients.shape[-1], dtype=torch.float64).index_add_(1, frequency, by_a)


class NeuronFrequencies(NamedTuple):
    key_frequencies: list[int]  # 1-based, ascending
    top_frequency: Tensor  # [n_live] each live neuron's top frequency
    top_share: Tensor  # [n_live] the share of that neuron's variance its top frequency explains
    live: Tensor  # [n] bool: neurons whose activation varies at all


def neuron_frequencies(power_2d: Tensor, min_neuron_share: float = KEY_NEURON_SHARE) -> NeuronFrequencies:
    """Each live neuron's top frequency (from ``frequency_power_2d``) and the frequencies enough neurons vote for."""
    total = power_2d.sum((0, 1))
    live = total > 1e-9 * total.max()
    power = power_2d[..., live]
    own = power[0, 1:] + power[1:, 0] + power.diagonal(dim1=0, dim2=1).T[1:]  # [frequency-1 n_live]
    share = own / total[live]
    top_share, top = share.max(0)
    counts = torch.bincount(top, minlength=own.shape[0])
    key = [k + 1 for k in range(len(counts)) if counts[k] >= min_neuron_share * int(live.sum())]
    return NeuronFrequencies(key, top + 1, top_share, live)


def neuron_variance_share(power_2d: Tensor, key_frequencies: list[int]) -> float:
    """Share of all neurons' activation variance in 2D Fourier terms made only of the key frequencies (and constants)."""
    allowed = torch.tensor([0, *key_frequencies])
    inside = power_2d[allowed][:, allowed].sum()
    return (inside / power_2d.sum()).item()


def embedding_share(embedding: Tensor, key_frequencies: list[int]) -> float:
    """Share of an ``[p d_model]`` embedding's non-constant Fourier power in the key frequencies."""
    power = fourier_power(embedding)
    return (power[[k - 1 for k in key_frequencies]].sum() / power.sum()).item()
