"""Keeping features alive while training: the AuxK loss (TopK dictionaries) and resampling (any dictionary).

A feature is dead when it has not fired for ``dead_after_tokens`` tokens. Two remedies:

- **AuxK** (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the ``k_aux = d_in // 2``
  dead features with the largest pre-activations reconstruct the residual the live features left;
  the squared error of that, scaled by ``min(n_dead / k_aux, 1)``, is added to the loss (as SAELens does).
- **Resampling** (Anthropic, "Towards Monosemanticity", 2023): dead features are re-initialised on
  inputs drawn with probability proportional to the square of their reconstruction loss; the encoder
  row gets 0.2 times the mean live encoder norm, the bias 0, and Adam forgets their moments.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from interp_transformer.sae.dictionary import SparseAutoencoder

RESAMPLED_ENCODER_SCALE = 0.2


def auxk_loss(sae: SparseAutoencoder, acts_pre: Tensor, residual: Tensor, dead: Tensor) -> Tensor:
    """AuxK loss for ``[rows d_sae]`` pre-activations, the detached ``[rows d_in]`` residual ``x - recons``, and the dead mask."""
    n_dead = int(dead.sum())
    k_aux = max(1, sae.cfg.d_in // 2)
    if n_dead == 0:
        return acts_pre.new_zeros(())
    scale = min(n_dead / k_aux, 1.0)
    candidates = acts_pre.masked_fill(~dead, float("-inf"))
    top = candidates.topk(min(k_aux, n_dead), dim=-1)
    # No ReLU (as in SAELens): a dead feature's pre-activation is usually negative, and it needs the gradient anyway.
    aux_acts = torch.zeros_like(acts_pre).scatter(-1, top.indices, top.values)
    aux_recons = aux_acts @ sae.W_dec  # no bias: it reconstructs a residual, not an activation
    return scale * (aux_recons.float() - residual).pow(2).sum(-1).mean()


@torch.no_grad()
def resample_dead_features(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, inputs: Tensor, dead: Tensor, seed: int, step: int) -> int:
    """Re-initialise the ``dead`` features on badly reconstructed rows of ``inputs``; return how many were resampled."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    squared_error = (inputs - sae.decode(sae.activation(sae.encode_pre(inputs)))).pow(2).sum(-1)
    weights = squared_error.double().pow(2).cpu()
    if not weights.sum() > 0:  # a perfect reconstruction: any row will do
        weights = torch.ones_like(weights)
    rows = torch.multinomial(weights, n_dead, replacement=True, generator=_generator(seed, step)).to(inputs.device)
    directions = inputs[rows]
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    encoder_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[dead] = directions.to(sae.W_dec.dtype)
    sae.W_enc[:, dead] = (directions.T * RESAMPLED_ENCODER_SCALE * encoder_norm).to(sae.W_enc.dtype)
    sae.b_enc[dead] = 0
    for parameter, index in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
        for key in ("exp_avg", "exp_avg_sq"):
            moment = optimizer.state.get(parameter, {}).get(key)
            if moment is not None:
                moment[index] = 0
    return n_dead


def _generator(seed: int, step: int) -> torch.Generator:
    """The draws of one resampling are a function of (seed, step), so a resumed run makes the same ones."""
    digest = hashlib.sha256(f"resample/{seed}/{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
