"""Turn a pattern tensor, a cache or a model + prompt into checked ``[head_index query_pos key_pos]`` patterns.

Every attention view goes through ``resolve_attention``: it picks the layers, heads and batch
item, checks the shapes against the tokens, warns about rows that are not distributions, and
applies the optional position window and downsampling.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

PATTERN_NAME = "blocks.{layer}.attn.hook_pattern"
_PATTERN_KEY = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")
ROW_SUM_TOLERANCE = 1e-2

AttentionSource = Union[Tensor, Mapping, "HookedTransformer"]
LayerSpec = Union[int, Sequence[int], None]


class PatternWarning(UserWarning):
    """A pattern's rows do not sum to 1: probably attention scores, or a slice that dropped key positions."""


@dataclass(frozen=True)
class AttentionData:
    """Patterns ready to draw: ``pattern[i]`` is the head called ``head_names[i]``."""

    pattern: Float[Tensor, "head_index query_pos key_pos"]
    tokens: list[str]
    head_names: list[str]
    notes: tuple[str, ...] = ()


def resolve_attention(
    source: AttentionSource,
    tokens: Sequence[str] | None = None,
    prompt: str | Tensor | None = None,
    layer: LayerSpec = None,
    heads: Sequence[int] | int | None = None,
    batch_index: int = 0,
    positions: slice | None = None,
    downsample: int = 1,
    head_names: Sequence[str] | None = None,
) -> AttentionData:
    """Patterns and token labels from any source; see ``attention.attention_patterns`` for the arguments."""
    if isinstance(source, Tensor):
        if prompt is not None:
            raise TypeError("prompt= is only for a model source; with a pattern tensor pass tokens=")
        per_layer = {_single_layer(layer): _pattern_from_tensor(source, batch_index)}
    elif isinstance(source, Mapping):
        if prompt is not None:
            raise TypeError("prompt= is only for a model source; with a cache pass tokens=")
        per_layer = _patterns_from_cache(source, layer, batch_index)
    elif hasattr(source, "run_with_hooks") and hasattr(source, "cfg"):
        per_layer, model_tokens = _patterns_from_model(source, prompt, layer, batch_index)
        tokens = model_tokens if tokens is None else tokens
    else:
        raise TypeError(
            "attention views take a pattern tensor [head_index query_pos key_pos] (or [batch ...] / [query_pos key_pos]), "
            f"a cache mapping 'blocks.L.attn.hook_pattern' to patterns, or a HookedTransformer with prompt=; got {type(source).__name__}"
        )
    if tokens is None:
        raise ValueError("tokens= is needed to label the positions (e.g. model.to_str_tokens(prompt))")
    tokens = _check_tokens(tokens)
    names, patterns = [], []
    for layer_index, pattern in per_layer.items():
        _check_square(pattern, tokens, layer_index)
        _warn_if_not_distributions(pattern, layer_index)
        selected = _select_heads(pattern, heads, layer_index)
        for head in selected:
            names.append(_head_name(layer_index, head, len(per_layer) > 1 or layer_index is not None))
        patterns.append(pattern[selected])
    pattern = torch.cat(patterns).detach().to("cpu", torch.float32)
    if head_names is not None:
        names = _check_head_names(head_names, len(names))
    pattern, tokens, notes = _window_and_downsample(pattern, tokens, positions, downsample)
    return AttentionData(pattern, tokens, names, notes)


def _single_layer(layer: LayerSpec) -> int | None:
    if layer is None or isinstance(layer, int):
        return layer
    raise TypeError(f"a pattern tensor holds one layer; pass layer=<int> as its label, got {layer!r}")


def _pattern_from_tensor(pattern: Tensor, batch_index: int) -> Tensor:
    if pattern.ndim == 4:
        return _pick_batch(pattern, batch_index)
    if pattern.ndim == 3:
        return pattern
    if pattern.ndim == 2:
        return pattern[None]
    raise ValueError(
        f"a pattern must be [query_pos key_pos], [head_index query_pos key_pos] or [batch head_index query_pos key_pos]; "
        f"got rank {pattern.ndim} with shape {tuple(pattern.shape)}"
    )


def _pick_batch(pattern: Tensor, batch_index: int) -> Tensor:
    if not -pattern.shape[0] <= batch_index < pattern.shape[0]:
        raise IndexError(f"batch_index={batch_index} is out of range for a batch of {pattern.shape[0]}")
    return pattern[batch_index]


def _layers_available(keys: Sequence[str]) -> list[int]:
    return sorted(int(m.group(1)) for m in map(_PATTERN_KEY.match, keys) if m)


def _requested_layers(layer: LayerSpec, available: list[int], where: str) -> list[int]:
    if layer is None:
        if not available:
            raise KeyError(f"{where} has no attention patterns (keys like 'blocks.0.attn.hook_pattern')")
        return available
    requested = [layer] if isinstance(layer, int) else list(layer)
    if not requested:
        raise ValueError("layer= is an empty list; pass at least one layer")
    for value in requested:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"layers must be ints, got {value!r}")
        if value not in available:
            raise IndexError(f"layer {value} is not available in {where}; available layers: {available}")
    return requested


def _patterns_from_cache(cache: Mapping, layer: LayerSpec, batch_index: int) -> dict[int, Tensor]:
    keys = [key for key in cache if isinstance(key, str)]
    layers = _requested_layers(layer, _layers_available(keys), "the cache")
    result = {}
    for index in layers:
        pattern = cache[PATTERN_NAME.format(layer=index)]
        if not isinstance(pattern, Tensor) or pattern.ndim not in (3, 4):
            shape = tuple(pattern.shape) if isinstance(pattern, Tensor) else type(pattern).__name__
            raise ValueError(f"cache entry for layer {index} must be [batch head_index query_pos key_pos] or [head_index query_pos key_pos], got {shape}")
        result[index] = _pick_batch(pattern, batch_index) if pattern.ndim == 4 else pattern
    return result


def _patterns_from_model(
    model: HookedTransformer, prompt: str | Sequence[str] | Tensor | None, layer: LayerSpec, batch_index: int
) -> tuple[dict[int, Tensor], list[str]]:
    if prompt is None:
        raise ValueError("with a model, pass prompt= (a string, a list of strings, or token ids [pos] / [batch pos])")
    is_text = isinstance(prompt, str) or (isinstance(prompt, (list, tuple)) and all(isinstance(p, str) for p in prompt))
    tokens = model.to_tokens(prompt) if is_text else torch.as_tensor(prompt)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"prompt token ids must be [pos] or [batch pos], got shape {tuple(tokens.shape)}")
    row = _pick_batch(tokens, batch_index)
    layers = _requested_layers(layer, list(range(model.cfg.n_layers)), f"this {model.cfg.n_layers}-layer model")
    captured: dict[int, Tensor] = {}

    def keep(pattern: Tensor, hook) -> None:
        captured[hook.layer()] = pattern[batch_index].detach()

    hooks = [(PATTERN_NAME.format(layer=index), keep) for index in layers]
    stop = max(layers) + 1
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=hooks, stop_at_layer=stop if stop < model.cfg.n_layers else None)
    return {index: captured[index] for index in layers}, list(model.to_str_tokens(row))


def _check_tokens(tokens: Sequence[str]) -> list[str]:
    if isinstance(tokens, str):
        raise TypeError("tokens must be a list of strings (one per position), not one string; use model.to_str_tokens(text)")
    tokens = list(tokens)
    for position, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"tokens must be strings; position {position} holds {type(token).__name__} {token!r}")
    return tokens


def _check_square(pattern: Tensor, tokens: list[str], layer: int | None) -> None:
    where = f" (layer {layer})" if layer is not None else ""
    if pattern.ndim != 3 or pattern.shape[1] != pattern.shape[2]:
        raise ValueError(f"pattern{where} must be [head_index query_pos key_pos] with query_pos == key_pos, got {tuple(pattern.shape)}")
    if pattern.shape[1] != len(tokens):
        raise ValueError(f"pattern{where} covers {pattern.shape[1]} positions but {len(tokens)} tokens were given; pass one token per position")
    if pattern.is_complex() or not pattern.is_floating_point():
        raise TypeError(f"pattern{where} must hold real floats, got dtype {pattern.dtype}")
    if not bool(torch.isfinite(pattern).all()):
        raise ValueError(f"pattern{where} holds NaN or infinite values; is it from a fully masked row?")


def _warn_if_not_distributions(pattern: Tensor, layer: int | None) -> None:
    sums = pattern.detach().double().sum(-1)
    bad = (sums - 1).abs() > ROW_SUM_TOLERANCE
    negative = bool((pattern < -ROW_SUM_TOLERANCE).any())
    if bool(bad.any()) or negative:
        where = f"layer {layer}: " if layer is not None else ""
        warnings.warn(
            f"{where}{int(bad.sum())} of {bad.numel()} pattern rows do not sum to 1 (sums from {sums.min():.3g} to "
            f"{sums.max():.3g}{', negative values' if negative else ''}); attention patterns are softmax outputs "
            "(blocks.L.attn.hook_pattern), not scores (hook_attn_scores). Drawing it as given",
            PatternWarning,
            stacklevel=4,
        )


def _select_heads(pattern: Tensor, heads: Sequence[int] | int | None, layer: int | None) -> list[int]:
    n_heads = pattern.shape[0]
    if heads is None:
        return list(range(n_heads))
    selected = [heads] if isinstance(heads, int) else list(heads)
    if not selected:
        raise ValueError("heads= is an empty list; pass at least one head")
    for head in selected:
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < n_heads:
            where = f"layer {layer} has" if layer is not None else "the pattern has"
            raise IndexError(f"head {head!r} is out of range: {where} {n_heads} heads (0..{n_heads - 1})")
    return selected


def _head_name(layer: int | None, head: int, with_layer: bool) -> str:
    return f"L{layer}H{head}" if with_layer and layer is not None else f"Head {head}"


def _check_head_names(head_names: Sequence[str], count: int) -> list[str]:
    names = [str(name) for name in head_names]
    if len(names) != count:
        raise ValueError(f"{len(names)} head_names for {count} heads; give one name per drawn head")
    return names


def _window_and_downsample(
    pattern: Tensor, tokens: list[str], positions: slice | None, downsample: int
) -> tuple[Tensor, list[str], tuple[str, ...]]:
    notes = []
    if positions is not None:
        if not isinstance(positions, slice) or positions.step not in (None, 1):
            raise TypeError(f"positions must be a slice with step 1 (e.g. slice(0, 64)), got {positions!r}")
        kept = range(len(tokens))[positions]
        if len(kept) == 0:
            raise ValueError(f"positions={positions} keeps no positions out of {len(tokens)}")
        notes.append(f"positions {kept.start}..{kept.stop - 1} of 0..{len(tokens) - 1}; attention to keys outside them is not shown")
        pattern, tokens = pattern[:, positions, positions], tokens[positions]
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample must be a positive int (block size in positions), got {downsample!r}")
    if downsample > 1:
        pattern, tokens = downsample_pattern(pattern, tokens, downsample)
        notes.append(f"downsampled: each cell is a block of {downsample} query x {downsample} key positions (mean over queries, sum over keys)")
    return pattern, tokens, tuple(notes)


def downsample_pattern(
    pattern: Float[Tensor, "head_index query_pos key_pos"], tokens: list[str], block: int
) -> tuple[Float[Tensor, "head_index query_block key_block"], list[str]]:
    """Merge ``block`` consecutive positions: mean over queries, sum over keys, so rows still sum to 1.

    The merged token label is the block's tokens joined, so the text stays readable.
    """
    n_heads, n_pos, _ = pattern.shape
    n_blocks = -(-n_pos // block)
    padded = torch.zeros(n_heads, n_blocks * block, n_blocks * block, dtype=pattern.dtype)
    padded[:, :n_pos, :n_pos] = pattern
    blocks = padded.reshape(n_heads, n_blocks, block, n_blocks, block)
    counts = torch.tensor([min(block, n_pos - i * block) for i in range(n_blocks)], dtype=pattern.dtype)
    merged = blocks.sum(dim=(2, 4)) / counts[None, :, None]
    labels = ["".join(tokens[i : i + block]) for i in range(0, n_pos, block)]
    return merged, labels
