"""Declarative converters: a name map from our parameter names to a checkpoint's, and the ending they share.

Each architecture's file holds a ``NAME_MAP``: our name (``{L}`` = layer index) -> where it comes
from, ``From(source, layout)``, or ``Zeros(axes)`` for a tensor the architecture does not have (a bias
it never learned). ``layout`` is written in dimension words: the stored axes, and when ours differ,
``"stored -> ours"`` as an einops pattern (a transpose, a split per head, a fused q/k/v split with
``part``). Every stored shape is checked against the config before it is used.

``convert_with_name_map`` then adds what every converter ends with: the unembedding (its own tensor,
or the embedding transposed when the checkpoint ties them), a zero ``b_U`` (no supported family has
one), and the check that every tensor of the checkpoint was used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Union

import einops
import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.loading.hf_files import TensorTaker


@dataclass(frozen=True)
class From:
    """The checkpoint tensor ``source``, stored with axes ``layout`` (``"stored -> ours"`` when ours differ).

    ``part`` picks one slice of the leading ``qkv`` axis of a fused q/k/v tensor. ``optional``: a
    checkpoint without the tensor (a bias its config switched off) gives zeros.
    """

    source: str
    layout: str
    part: int | None = None
    optional: bool = False


@dataclass(frozen=True)
class Zeros:
    """A tensor the architecture does not have (q/k/v biases of GPT-Neo, MLP biases of Llama): zeros of ``axes``."""

    axes: str


NameMap = Mapping[str, Union[From, Zeros]]


def axis_sizes(cfg: TransformerConfig) -> dict[str, int]:
    """Each dimension word's size; ``kv_head`` counts key/value heads (fewer than ``head_index`` under GQA)."""
    return {
        "d_model": cfg.d_model, "d_mlp": cfg.d_mlp or 0, "d_vocab": cfg.d_vocab, "n_ctx": cfg.n_ctx, "d_head": cfg.d_head,
        "head_index": cfg.n_heads, "kv_head": cfg.n_key_value_heads or cfg.n_heads, "qkv": 3,
    }


def convert_with_name_map(
    take: TensorTaker, name_map: NameMap, cfg: TransformerConfig, unembed_source: str
) -> dict[str, Tensor]:
    """Our state dict from a checkpoint: the name map, then the shared ending (unembedding, ``b_U``, all used)."""
    sizes = axis_sizes(cfg)
    state: dict[str, Tensor] = {}
    for ours, spec in name_map.items():
        for layer in range(cfg.n_layers) if "{L}" in ours else (None,):
            state[ours.format(L=layer)] = _tensor_for(take, spec, layer, sizes)
    return finish_conversion(state, take, cfg, unembed_source)


def finish_conversion(state: dict[str, Tensor], take: TensorTaker, cfg: TransformerConfig, unembed_source: str) -> dict[str, Tensor]:
    """The ending every converter shares: ``W_U`` (tied to ``W_E`` when the checkpoint omits it), zero ``b_U``, every tensor used."""
    # A tied checkpoint may omit its unembedding; it is then the embedding transposed.
    if unembed_source in take.state:
        lm_head = take(unembed_source, (cfg.d_vocab, cfg.d_model))
    else:
        lm_head = state["embed.W_E"]
    state["unembed.W_U"] = lm_head.T
    state["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=lm_head.dtype)
    take.check_all_used()
    return {name: tensor.contiguous() for name, tensor in state.items()}


def _tensor_for(take: TensorTaker, spec: From | Zeros, layer: int | None, sizes: dict[str, int]) -> Tensor:
    if isinstance(spec, Zeros):
        return torch.zeros(_shape(spec.axes, sizes), dtype=take.dtype)
    source = spec.source.format(L=layer)
    stored, arrow, ours = spec.layout.partition("->")
    if spec.optional and source not in take.state:
        shape = _shape(ours if arrow else stored, sizes)
        return torch.zeros(shape[1:] if spec.part is not None else shape, dtype=take.dtype)
    tensor = take(source, _shape(stored, sizes))
    if arrow:
        used = set(re.findall(r"\w+", spec.layout))
        tensor = einops.rearrange(tensor, spec.layout, **{axis: size for axis, size in sizes.items() if axis in used})
    return tensor[spec.part] if spec.part is not None else tensor


def _shape(axes: str, sizes: dict[str, int]) -> tuple[int, ...]:
    """``"(head_index d_head) d_model"`` -> ``(n_heads * d_head, d_model)``."""
    shape = []
    for group, word in re.findall(r"\(([^)]*)\)|(\w+)", axes):
        words = group.split() if group else [word]
        size = 1
        for name in words:
            size *= sizes[name]
        shape.append(size)
    return tuple(shape)
