"""``x @ weight + bias`` over the last axis as one fused matmul, shared by the components."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def affine(
    x: Float[Tensor, "... d_in"], weight: Float[Tensor, "d_in d_out"], bias: Float[Tensor, "d_out"]
) -> Float[Tensor, "... d_out"]:
    """``einsum("... d_in, d_in d_out -> ... d_out") + bias``, computed as a single ``addmm``.

    Why not the einsum: it lowers to a batched matmul plus a separate pass for the bias add.
    Flattening the leading axes gives one large GEMM with the bias fused into it, the same kernel
    Hugging Face's GPT-2 runs (see benchmarks/README.md for what that bought).
    """
    flat = x.reshape(-1, x.shape[-1])
    return torch.addmm(bias, flat, weight).view(*x.shape[:-1], weight.shape[-1])
