"""Fourier analysis of the embedded modular-addition model (Nanda et al. 2023).

Projects the number embeddings onto the real Fourier basis over Z_113, finds the handful of key
frequencies that carry almost all of the embedding's norm, and checks that the neurons are
periodic too: each neuron's activation over inputs a (with b fixed) is explained mostly by one
frequency. Writes CSV tables to --out and prints the headline numbers.

    python analyses/modadd_fourier.py --out out/modadd_fourier
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from interp_transformer import HookedTransformer
from interp_transformer.toy.modadd import EQUALS_ID, N_SPECIAL, P, fourier_basis, fourier_power


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="modadd-1l")
    parser.add_argument("--out", type=Path, default=Path("out/modadd_fourier"))
    parser.add_argument("--key-frequencies", type=int, default=6)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    model = HookedTransformer.from_pretrained(args.model)
    with torch.no_grad():
        power = fourier_power(model.W_E[N_SPECIAL : N_SPECIAL + P])
        order = power.argsort(descending=True)
        key = (order[: args.key_frequencies] + 1).sort().values  # frequencies are 1-based
        share = (power[order[: args.key_frequencies]].sum() / power.sum()).item()
        pd.DataFrame({"frequency": torch.arange(1, len(power) + 1).numpy(), "embedding_power": power.numpy()}).to_csv(
            args.out / "embedding_fourier_power.csv", index=False
        )
        neuron_share = neuron_frequency_concentration(model)
        a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).T
        tokens = torch.stack([a + N_SPECIAL, b + N_SPECIAL, torch.full_like(a, EQUALS_ID)], dim=1)
        correct = model(tokens)[:, -1, N_SPECIAL : N_SPECIAL + P].argmax(-1) == (a + b) % P
    headline = {
        # exact (every pair, no sampling); printed to 5 digits so 6 errors do not round to 100%
        "accuracy_all_pairs": round(correct.float().mean().item(), 5),
        "wrong_of_all_pairs": f"{int((~correct).sum())} of {len(correct):,}",
        "key_frequencies": key.tolist(),
        "embedding_share_in_key_frequencies": share,
        "median_neuron_share_in_top_frequency": neuron_share,
    }
    for name, value in headline.items():
        print(f"{name}: {value:.5g}" if isinstance(value, float) else f"{name}: {value}")
    return headline


def neuron_frequency_concentration(model: HookedTransformer) -> float:
    """Median over neurons of the share of activation variance (over a, at b = 0) in the neuron's top frequency."""
    a = torch.arange(P)
    tokens = torch.stack([a + N_SPECIAL, torch.full_like(a, N_SPECIAL), torch.full_like(a, EQUALS_ID)], dim=1)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_post")
    acts = cache["blocks.0.mlp.hook_post"][:, -1].double()  # [a d_mlp]
    coefficients = (fourier_basis(P) @ (acts - acts.mean(0))).pow(2)[1:]  # drop the constant
    per_frequency = coefficients[0::2] + coefficients[1::2]  # [frequency d_mlp]
    total = per_frequency.sum(0)
    alive = total > 1e-8
    return (per_frequency.max(0).values[alive] / total[alive]).median().item()


if __name__ == "__main__":
    main()
