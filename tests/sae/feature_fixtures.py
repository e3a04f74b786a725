"""Shared pieces of the feature-analysis tests: exactly representable models and dictionaries, and a brute-force reference.

Embeddings and encoder weights are small multiples of 1/4, so every feature activation is an
exact float32 sum whatever the order of summation: equal activations are exactly equal (many
ties, on purpose) and the dense reference below agrees bit for bit.
"""

from __future__ import annotations

import math

import torch
from conftest import tiny_config

from interp_transformer import HookedTransformer
from interp_transformer.sae import SAEConfig, SparseAutoencoder

N_SEQUENCES, SEQ_LEN, D_VOCAB, D_SAE = 15, 12, 20, 12


def quantized_model(**overrides) -> HookedTransformer:
    model = HookedTransformer(tiny_config(d_vocab=D_VOCAB, n_ctx=16, **overrides)).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.embed.W_E.copy_(torch.randint(-3, 4, model.embed.W_E.shape, generator=generator) / 4)
    return model


def quantized_sae(d_in: int, hook: str, d_sae: int = D_SAE, seed: int = 4, **cfg) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, hook_name=hook, **cfg), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randint(-2, 3, sae.W_enc.shape, generator=generator) / 4)
        sae.b_enc.copy_(torch.randint(-4, 2, sae.b_enc.shape, generator=generator) / 4)
    return sae


def corpus_tokens(seed: int = 5) -> torch.Tensor:
    return torch.randint(0, D_VOCAB, (N_SEQUENCES, SEQ_LEN), generator=torch.Generator().manual_seed(seed))


def dense_feature_acts(sae: SparseAutoencoder, acts: torch.Tensor) -> torch.Tensor:
    """ReLU(x @ W_enc + b_enc) written out, for a standard SAE without the pre-encoder bias."""
    assert sae.cfg.architecture == "standard" and not sae.cfg.apply_b_dec_to_input
    return torch.relu(acts.double() @ sae.W_enc.detach().double() + sae.b_enc.detach().double())


def brute_force_top(tokens, feature_acts, positions, features, k, before, after, min_activation=0.0):
    """Per feature: [(value, sequence, token position, window tokens, window activations)], from sorting
    every activation by (value desc, sequence, stored position) in plain Python."""
    n, n_stored, _ = feature_acts.shape
    seq_len = tokens.shape[1]
    stored_at = {int(pos): index for index, pos in enumerate(positions)}
    result = {}
    for feature in features:
        entries = sorted(
            (-float(feature_acts[s, p, feature]), s, p)
            for s in range(n)
            for p in range(n_stored)
            if float(feature_acts[s, p, feature]) > min_activation
        )[:k]
        rows = []
        for negative, s, p in entries:
            center = int(positions[p])
            window = range(center - before, center + after + 1)
            window_tokens = [int(tokens[s, u]) if 0 <= u < seq_len else -1 for u in window]
            window_acts = [
                float(feature_acts[s, stored_at[u], feature]) if 0 <= u < seq_len and u in stored_at else math.nan for u in window
            ]
            rows.append((-negative, s, center, window_tokens, window_acts))
        result[feature] = rows
    return result


def as_rows(found, feature):
    """The same tuples from a FeatureActivations result (padding dropped)."""
    row = found.row(feature)
    rows = []
    for rank in range(found.values.shape[1]):
        if int(found.sequences[row, rank]) < 0:
            break
        rows.append(
            (
                float(found.values[row, rank]),
                int(found.sequences[row, rank]),
                int(found.positions[row, rank]),
                found.window_tokens[row, rank].tolist(),
                found.window_activations[row, rank].tolist(),
            )
        )
    return rows


def same_rows(got, expected) -> bool:
    def key(rows):
        return [(v, s, p, t, [None if math.isnan(a) else a for a in acts]) for v, s, p, t, acts in rows]

    return key(got) == key(expected)
