"""Activations on text: tokens coloured by any per-token scalar, neuron browsers, top-k tokens (circuitsvis).

Any per-token number works: a neuron (``cache["blocks.0.mlp.hook_post"][0, :, 42]``), a head's
attention to one token (``pattern[0, head, :, key]``), a direct logit attribution. Values are
sent to ``significant`` digits (default 4): the colour scale shows far fewer, the tooltip shows these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor

from interp_transformer.vis.circuitsvis_view import CircuitsVisView, tokens_for
from interp_transformer.vis.escaping import round_sig
from interp_transformer.vis.view import DEFAULT_MAX_BYTES

Values = Union[Tensor, Sequence[float]]


def colored_tokens(
    tokens: Sequence[str],
    values: Values,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    negative_color: str | None = None,
    positive_color: str | None = None,
    title: str | None = None,
    significant: int = 4,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> CircuitsVisView:
    """The text with each token's background coloured by ``values[pos]`` (hover for the value).

    Colours run from ``negative_color`` (default red) at ``min_value`` through white at 0 to
    ``positive_color`` (default blue) at ``max_value``; the bounds default to the values' range.
    """
    tokens = _check_tokens(tokens, "tokens")
    values = _as_tensor(values, "values")
    if values.ndim != 1 or values.shape[0] != len(tokens):
        raise ValueError(f"values must be [pos] with one value per token ({len(tokens)}), got shape {tuple(values.shape)}")
    props = {
        "tokens": tokens_for("ColoredTokens", tokens),
        "values": _rounded(values, significant),
        "minValue": min_value,
        "maxValue": max_value,
        "negativeColor": negative_color,
        "positiveColor": positive_color,
    }
    view = CircuitsVisView("colored_tokens", "ColoredTokens", _without_none(props), title)
    view.warn_if_large(max_bytes, "colour a shorter text")
    return view


def text_neuron_activations(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    activations: Tensor | Sequence[Tensor],
    *,
    first_dimension_name: str = "Layer",
    second_dimension_name: str = "Neuron",
    first_dimension_labels: Sequence[str] | None = None,
    second_dimension_labels: Sequence[str] | None = None,
    title: str | None = None,
    significant: int = 4,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> CircuitsVisView:
    """Texts coloured by one neuron at a time, with drop-downs to pick the layer and the neuron.

    One text: ``tokens`` a list of strings and ``activations`` ``[pos layer neuron]`` (or
    ``[pos neuron]`` for a single layer). Several texts: a list of token lists and a list of
    such tensors (the colour scale is shared).
    """
    samples_tokens, samples_acts = _samples(tokens, activations)
    n_layers, n_neurons = samples_acts[0].shape[1:]
    for acts in samples_acts:
        if tuple(acts.shape[1:]) != (n_layers, n_neurons):
            raise ValueError(f"every sample needs the same [layer neuron] sizes; got {tuple(acts.shape[1:])} and {(n_layers, n_neurons)}")
    props = {
        "tokens": [tokens_for("TextNeuronActivations", sample) for sample in samples_tokens],
        "activations": [_rounded(acts, significant) for acts in samples_acts],
        "firstDimensionName": first_dimension_name,
        "secondDimensionName": second_dimension_name,
        "firstDimensionLabels": _labels(first_dimension_labels, n_layers, "first_dimension_labels"),
        "secondDimensionLabels": _labels(second_dimension_labels, n_neurons, "second_dimension_labels"),
    }
    view = CircuitsVisView("text_neuron_activations", "TextNeuronActivations", _without_none(props), title)
    view.warn_if_large(max_bytes, f"it holds {n_layers} layers x {n_neurons} neurons per token; select neurons first (activations[..., :100])")
    return view


def topk_tokens(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    activations: Tensor | Sequence[Tensor],
    *,
    k: int = 10,
    first_dimension_name: str = "Layer",
    third_dimension_name: str = "Neuron",
    sample_labels: Sequence[str] | None = None,
    first_dimension_labels: Sequence[str] | None = None,
    title: str | None = None,
    significant: int = 4,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> CircuitsVisView:
    """Tables of the ``k`` tokens that most (and least) activate each neuron, per text and layer.

    ``activations`` is ``[layer pos neuron]`` per text (note: position second, as in circuitsvis),
    or ``[pos neuron]`` for a single layer.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    samples_tokens, samples_acts = _samples(tokens, activations, pos_axis=1)
    top_vals, top_idxs, bottom_vals, bottom_idxs = [], [], [], []
    for acts in samples_acts:
        kk = min(k, acts.shape[1])
        top = acts.topk(kk, dim=1)
        bottom = acts.topk(kk, dim=1, largest=False)
        top_vals.append(_rounded(top.values, significant))
        top_idxs.append(top.indices.tolist())
        bottom_vals.append(_rounded(bottom.values.flip(1), significant))
        bottom_idxs.append(bottom.indices.flip(1).tolist())
    n_layers = samples_acts[0].shape[0]
    props = {
        "tokens": [tokens_for("TopkTokens", sample) for sample in samples_tokens],
        "topkVals": top_vals,
        "topkIdxs": top_idxs,
        "bottomkVals": bottom_vals,
        "bottomkIdxs": bottom_idxs,
        "firstDimensionName": first_dimension_name,
        "thirdDimensionName": third_dimension_name,
        "sampleLabels": _labels(sample_labels, len(samples_tokens), "sample_labels"),
        "firstDimensionLabels": _labels(first_dimension_labels, n_layers, "first_dimension_labels"),
    }
    view = CircuitsVisView("topk_tokens", "TopkTokens", _without_none(props), title)
    view.warn_if_large(max_bytes, "use a smaller k or fewer neurons")
    return view


def _samples(
    tokens: Sequence[str] | Sequence[Sequence[str]], activations: Tensor | Sequence[Tensor], pos_axis: int = 0
) -> tuple[list[list[str]], list[Tensor]]:
    """One or several (tokens, activations) samples, checked; rank-2 activations get a layer axis of 1."""
    single = isinstance(tokens, Sequence) and len(tokens) > 0 and all(isinstance(t, str) for t in tokens)
    if isinstance(tokens, str):
        raise TypeError("tokens must be a list of strings (or a list of such lists), not one string")
    samples_tokens = [tokens] if single else list(tokens)
    samples_acts = [activations] if isinstance(activations, Tensor) and single else list(activations)
    if not samples_tokens:
        raise ValueError("no samples: tokens is empty")
    if len(samples_tokens) != len(samples_acts):
        raise ValueError(f"{len(samples_tokens)} token lists but {len(samples_acts)} activation tensors; give one per sample")
    checked_tokens, checked_acts = [], []
    for index, (sample_tokens, acts) in enumerate(zip(samples_tokens, samples_acts)):
        sample_tokens = _check_tokens(sample_tokens, f"tokens[{index}]")
        acts = _as_tensor(acts, f"activations[{index}]")
        if acts.ndim == 2:
            acts = acts.unsqueeze(1 - pos_axis)  # [pos neuron] -> one layer
        if acts.ndim != 3:
            expected = "[pos layer neuron]" if pos_axis == 0 else "[layer pos neuron]"
            raise ValueError(f"activations[{index}] must be {expected} (or [pos neuron]), got shape {tuple(acts.shape)}")
        if acts.shape[pos_axis] != len(sample_tokens):
            raise ValueError(
                f"activations[{index}] has {acts.shape[pos_axis]} positions (axis {pos_axis}) but tokens[{index}] has {len(sample_tokens)}"
            )
        checked_tokens.append(sample_tokens)
        checked_acts.append(acts)
    return checked_tokens, checked_acts


def _check_tokens(tokens: Sequence[str], what: str) -> list[str]:
    if isinstance(tokens, str):
        raise TypeError(f"{what} must be a list of strings (one per position), not one string")
    tokens = list(tokens)
    for position, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"{what} must hold strings; position {position} holds {type(token).__name__} {token!r}")
    return tokens


def _as_tensor(values: Values, what: str) -> Tensor:
    tensor = values.detach().cpu() if isinstance(values, Tensor) else torch.as_tensor(values)
    if tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8, torch.int8)):
        raise TypeError(f"{what} must be real numbers, got dtype {tensor.dtype}")
    tensor = tensor.double()
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{what} holds NaN or infinite values; replace or mask them first")
    return tensor


def _rounded(values: Tensor, significant: int) -> list:
    if isinstance(significant, bool) or not isinstance(significant, int) or not 1 <= significant <= 17:
        raise ValueError(f"significant must be an int from 1 to 17, got {significant!r}")
    flat = [round_sig(v, significant) for v in values.flatten().tolist()]
    return _reshape(flat, list(values.shape))


def _reshape(flat: list, shape: list[int]) -> list:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _labels(labels: Sequence[str] | None, count: int, what: str) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(label) for label in labels]
    if len(labels) != count:
        raise ValueError(f"{what} has {len(labels)} labels for {count} entries")
    return labels


def _without_none(props: dict) -> dict:
    return {key: value for key, value in props.items() if value is not None}
