"""Argument checks shared by the feature-analysis functions: each bad input gets an error that says what to change."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from interp_transformer.sae.dictionary import SparseAutoencoder


def check_dictionary(sae: SparseAutoencoder, hook: str | None) -> str:
    """The hook the dictionary reads (``hook`` or ``sae.cfg.hook_name``), after checking the dictionary."""
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder or Transcoder, got {type(sae).__name__}")
    if sae.cfg.architecture == "batchtopk":
        raise ValueError(
            "a 'batchtopk' dictionary's activations depend on the other rows of the batch, so a token's activation is "
            "not defined on its own; save and load it (it loads as a JumpReLU with its threshold, as SAELens does) and analyse that"
        )
    hook = hook if hook is not None else sae.cfg.hook_name
    if not isinstance(hook, str) or not hook:
        raise ValueError(f"the dictionary's cfg.hook_name is {sae.cfg.hook_name!r}; pass the hook it reads as hook='blocks.0.hook_resid_post' (for example)")
    return hook


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_window(window: object) -> tuple[int, int]:
    if (
        not isinstance(window, (tuple, list))
        or len(window) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in window)
    ):
        raise ValueError(f"window must be (before, after): two ints >= 0 of tokens shown around each activation, got {window!r}")
    return int(window[0]), int(window[1])


def check_features(features: Sequence[int] | Tensor | None, d_sae: int) -> Tensor:
    """The analysed features as a long tensor: all ``d_sae`` for None, else distinct indices in ``[0, d_sae)``."""
    if features is None:
        return torch.arange(d_sae)
    if isinstance(features, Tensor):
        if features.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8) or features.ndim > 1:
            raise TypeError(f"features must be a 1-D integer tensor or a list of ints, got dtype {features.dtype}, shape {tuple(features.shape)}")
        values = features.reshape(-1).tolist()
    elif isinstance(features, (int, str)) or not isinstance(features, Sequence):
        raise TypeError(f"features must be a list of feature indices (e.g. [3, 17]), got {features!r}")
    else:
        values = list(features)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"features must hold ints (indices into d_sae), got {value!r}")
    if not values:
        raise ValueError("features is empty; pass None for all features or a list of indices")
    bad = [v for v in values if not 0 <= v < d_sae]
    if bad:
        raise ValueError(f"features {bad[:10]} are out of range for a dictionary with d_sae={d_sae}; use indices in [0, {d_sae - 1}]")
    if len(set(values)) != len(values):
        raise ValueError(f"features lists some indices twice ({sorted(v for v in set(values) if values.count(v) > 1)[:10]}); list each once")
    return torch.tensor(values, dtype=torch.long)
