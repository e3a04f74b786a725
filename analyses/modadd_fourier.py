"""Fourier analysis of the embedded modular-addition model (Nanda et al. 2023).

Names the model's key frequencies from its neurons (each live MLP neuron votes for the frequency whose
terms explain most of its activation variance over every pair (a, b)), then checks the set two ways:
the share of the number embeddings' Fourier power in those frequencies, and the share of all neurons'
activation variance in 2D Fourier terms built only from them. Also prints the exact accuracy over
every test pair. Writes CSV tables to --out.

    python analyses/modadd_fourier.py --out out/modadd_fourier
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from interp_transformer import HookedTransformer
from interp_transformer.toy import fourier
from interp_transformer.toy.modadd import N_SPECIAL, P, neuron_activations, split


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="modadd-1l")
    parser.add_argument("--out", type=Path, default=Path("out/modadd_fourier"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    model = HookedTransformer.from_pretrained(args.model)
    with torch.no_grad():
        embedding = model.W_E[N_SPECIAL : N_SPECIAL + P].detach()
        power_2d = fourier.frequency_power_2d(neuron_activations(model))
        neurons = fourier.neuron_frequencies(power_2d)
        key = neurons.key_frequencies
        _, test_rows = split()
        correct = model(test_rows[:, :3])[:, -1, N_SPECIAL : N_SPECIAL + P].argmax(-1) == test_rows[:, 3] - N_SPECIAL
    frequencies = torch.arange(1, P // 2 + 1)
    pd.DataFrame({
        "frequency": frequencies.numpy(),
        "embedding_power": fourier.fourier_power(embedding).numpy(),
        "neurons_voting": torch.bincount(neurons.top_frequency - 1, minlength=P // 2).numpy(),
        "is_key": torch.isin(frequencies, torch.tensor(key)).numpy(),
    }).to_csv(args.out / "frequencies.csv", index=False)
    pd.DataFrame({"neuron": neurons.live.nonzero().squeeze(1).numpy(), "top_frequency": neurons.top_frequency.numpy(),
                  "top_frequency_variance_share": neurons.top_share.numpy()}).to_csv(args.out / "neurons.csv", index=False)
    headline = {
        # exact (every test pair, no sampling); printed to 5 digits so a few errors do not round to 100%
        "test_accuracy": round(correct.float().mean().item(), 5),
        "wrong_of_test_pairs": f"{int((~correct).sum())} of {len(correct):,}",
        "key_frequencies": key,
        "embedding_share_in_key_frequencies": fourier.embedding_share(embedding, key),
        "neuron_variance_share_in_key_frequencies": fourier.neuron_variance_share(power_2d, key),
        "neurons_voting_for_a_key_frequency": f"{int(torch.isin(neurons.top_frequency, torch.tensor(key)).sum())} of "
                                              f"{int(neurons.live.sum())} live",
        "median_neuron_share_in_top_frequency": neurons.top_share.median().item(),
    }
    for name, value in headline.items():
        print(f"{name}: {value:.5g}" if isinstance(value, float) else f"{name}: {value}")
    return headline


if __name__ == "__main__":
    main()
