"""The one table of MLP activation functions: config validation, the MLP and the converters all read it.

``ACTIVATION_FUNCTIONS`` maps our ``act_fn`` names to functions; ``HF_ACTIVATION_NAMES`` maps the names
Hugging Face configs use (``activation_function``, ``hidden_act``) to ours. Adding an activation means
one line in each.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def gelu_new(x: Tensor) -> Tensor:
    """GPT-2's tanh approximation of GELU, written out to match Hugging Face bit for bit."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": gelu_new,
    "gelu": F.gelu,
    "gelu_fast": gelu_fast,
    "relu": F.relu,
    "silu": F.silu,
}
# Hugging Face name -> ours; "swish" is Hugging Face's other name for SiLU.
HF_ACTIVATION_NAMES: dict[str, str] = {name: name for name in ACTIVATION_FUNCTIONS} | {"swish": "silu"}


def activation_from_hf(name: str, architecture: str, field: str) -> str:
    """Our ``act_fn`` for a Hugging Face config's activation name, or a ValueError naming the supported ones."""
    if name not in HF_ACTIVATION_NAMES:
        raise ValueError(f"{architecture} {field} {name!r} is not supported; supported: {sorted(HF_ACTIVATION_NAMES)}")
    return HF_ACTIVATION_NAMES[name]
