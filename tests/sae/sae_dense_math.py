"""Independent, written-out maths for sparse dictionaries (what the tests compare the library against)."""

from __future__ import annotations

import torch


def dense_features(x, W_enc, b_enc, b_dec=None, architecture="standard", k=None, threshold=None):
    """Feature activations computed the long way: explicit sums, sorting instead of topk."""
    sae_in = x if b_dec is None else x - b_dec
    pre = torch.einsum("...i,if->...f", sae_in, W_enc) + b_enc
    if architecture == "standard":
        return torch.where(pre > 0, pre, torch.zeros_like(pre))
    if architecture == "jumprelu":
        return torch.where((pre > threshold) & (pre > 0), pre, torch.zeros_like(pre))
    if architecture == "topk":
        kth_largest = pre.sort(dim=-1, descending=True).values[..., k - 1 : k]
        return torch.where((pre >= kth_largest) & (pre > 0), pre, torch.zeros_like(pre))
    if architecture == "batchtopk":
        rows = pre.numel() // pre.shape[-1]
        positive = torch.where(pre > 0, pre, torch.zeros_like(pre))
        cutoff = positive.flatten().sort(descending=True).values[k * rows - 1]
        return torch.where(positive >= cutoff, positive, torch.zeros_like(pre))
    raise ValueError(architecture)


def dense_decode(acts, W_dec, b_dec):
    return torch.einsum("...f,fo->...o", acts, W_dec) + b_dec


def perfect_weights(d_in: int):
    """A ReLU dictionary with d_sae = 2 * d_in that reconstructs exactly: relu(x) - relu(-x) = x."""
    eye = torch.eye(d_in)
    W_enc = torch.cat([eye, -eye], dim=1)  # [d_in, 2 d_in]
    W_dec = torch.cat([eye, -eye], dim=0)  # [2 d_in, d_in]
    return W_enc, W_dec
