"""One batched forward that runs many patched copies of a batch at once and scores each copy.

Copy ``j`` of the batch holds rows ``j*batch : (j+1)*batch`` of an expanded batch. Every patch
location becomes one copy; hooks edit each copy's slice in place. Nothing before the earliest
patched layer changes, so the forward starts there from the target run's cached residual stream
(``start_at_layer``) instead of from the tokens. When the metric only reads one position per
prompt (``metrics.AnswerMetric``), only those positions are unembedded.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_transformer.patching.metrics import AnswerMetric, _per_prompt
from interp_transformer.patching.sites import EMBEDDING_LAYER, Patch, PatchLocation, hook_layer

if TYPE_CHECKING:
    from interp_transformer.hooks import HookPoint
    from interp_transformer.model import HookedTransformer

Metric = Callable[[Tensor], Tensor]


@dataclass
class TargetRun:
    """The unpatched run every copy starts from: its inputs, the residual stream entering each layer
    (``residuals[n_layers]`` enters ``ln_final``) and the metric's value on it."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"] | None
    residuals: dict[int, Float[Tensor, "batch pos d_model"]]
    baseline: Tensor

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]


def resid_entry_name(layer: int, n_layers: int) -> str:
    """The hook holding the residual stream that enters ``layer`` (a block, or ``ln_final`` at ``n_layers``)."""
    return f"blocks.{layer}.hook_resid_pre" if layer < n_layers else f"blocks.{n_layers - 1}.hook_resid_post"


def start_layer(patch: Patch, n_layers: int) -> int:
    """The first layer a patch changes. A resid_post patch changes the stream entering the next layer."""
    layer = hook_layer(patch.hook_name, n_layers)
    return layer + 1 if patch.hook_name.endswith(".hook_resid_post") else layer


def check_metric_value(value: object, batch: int) -> Tensor:
    """The metric's output as a tensor: a scalar or ``[batch]``; anything else is a clear error."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = torch.tensor(float(value))
    if not isinstance(value, Tensor):
        raise TypeError(
            f"the metric returned {type(value).__name__}; it must return a tensor (a scalar, or one value per prompt)"
        )
    if value.ndim != 0 and tuple(value.shape) != (batch,):
        raise ValueError(
            f"the metric returned shape {tuple(value.shape)}; it must return a scalar (e.g. the mean over prompts) or "
            f"one value per prompt, shape [batch={batch}]. If it returns one value per position or per vocabulary "
            "entry, select the answer position and token first (e.g. logits[:, -1, answer] - logits[:, -1, wrong]), "
            "or use patching.metrics.LogitDiff"
        )
    if not (value.is_floating_point() or value.is_complex()):
        value = value.float()
    return value.detach().float() if value.dtype in (torch.float16, torch.bfloat16) else value.detach()


def run_target(model: "HookedTransformer", tokens: Tensor, metric: Metric, attention_mask: Tensor | None) -> TargetRun:
    """One unpatched forward that keeps the residual stream entering every layer, and the metric on it."""
    n_layers = model.cfg.n_layers
    wanted = {resid_entry_name(layer, n_layers): layer for layer in range(n_layers + 1)}
    residuals: dict[int, Tensor] = {}

    def keep(activation: Tensor, hook: "HookPoint") -> None:
        residuals[wanted[hook.name]] = activation.detach().clone()

    with torch.no_grad(), model.hooks(fwd_hooks=[(list(wanted), keep)]):
        logits = model(tokens, attention_mask=attention_mask)
        baseline = check_metric_value(metric(logits), tokens.shape[0])
    return TargetRun(tokens, attention_mask, residuals, baseline)


def score_copies(
    model: "HookedTransformer",
    metric: Metric,
    target: TargetRun,
    locations: Sequence[PatchLocation],
    source: Mapping[str, Tensor] | None,
) -> Tensor:
    """Metric of each location's patched run, ``[n_locations, *metric shape]``, from one forward."""
    n_copies, batch, n_layers = len(locations), target.batch, model.cfg.n_layers
    start = min(start_layer(patch, n_layers) for location in locations for patch in location.patches)
    by_hook: dict[str, list[tuple[int, Patch]]] = defaultdict(list)
    for copy, location in enumerate(locations):
        for patch in location.patches:
            by_hook[patch.hook_name].append((copy, patch))
    kwargs = {"attention_mask": None if target.attention_mask is None else target.attention_mask.repeat(n_copies, 1)}
    if start == EMBEDDING_LAYER:
        model_input = target.tokens.repeat(n_copies, 1)
    else:
        model_input = target.residuals[start].repeat(n_copies, 1, 1)
        kwargs["start_at_layer"] = start
        entry = f"blocks.{start - 1}.hook_resid_post"
        for copy, patch in by_hook.pop(entry, []):  # that hook does not run when starting at `start`
            apply_patch(model_input.unflatten(0, (n_copies, batch))[copy], patch, source)

    def patch_hook(activation: Tensor, hook: "HookPoint") -> Tensor:
        copies = activation.unflatten(0, (n_copies, batch))
        for copy, patch in by_hook[hook.name]:
            apply_patch(copies[copy], patch, source)
        return activation

    # ln_final's own hooks need the full path; everything else can stop before it.
    answer_only = isinstance(metric, AnswerMetric) and all(hook_layer(name, n_layers) < n_layers for name in by_hook)
    with torch.no_grad(), model.hooks(fwd_hooks=[(list(by_hook), patch_hook)] if by_hook else []):
        if answer_only:
            residual = model(model_input, stop_at_layer=n_layers, **kwargs)
            scores = _score_answer_positions(model, metric, residual.unflatten(0, (n_copies, batch)))
        else:
            logits = model(model_input, **kwargs).unflatten(0, (n_copies, batch))
            scores = [check_metric_value(metric(logits[copy]), batch) for copy in range(n_copies)]
    return torch.stack(scores)


def _score_answer_positions(model: "HookedTransformer", metric: AnswerMetric, residual: Tensor) -> list[Tensor]:
    """Unembed only each prompt's answer position: ``residual`` is ``[copy batch pos d_model]``."""
    n_copies, batch = residual.shape[:2]
    rows = torch.arange(batch, device=residual.device)
    positions = _per_prompt(metric.positions, batch, residual.device, "positions")
    answer_logits = model.unembed(model.ln_final(residual[:, rows, positions]))  # [copy batch d_vocab]
    return [check_metric_value(metric.from_answer_logits(answer_logits[copy]), batch) for copy in range(n_copies)]


def apply_patch(activation: Tensor, patch: Patch, source: Mapping[str, Tensor] | None) -> None:
    """Overwrite part of one copy's ``[batch ...]`` activation in place."""
    index = (slice(None), *patch.index)
    if patch.setter is not None:
        patched = patch.setter(activation, list(patch.setter_index), source[patch.hook_name])
        if patched is not activation:
            activation.copy_(patched)
    elif patch.value is not None:
        activation[index] = patch.value() if callable(patch.value) else patch.value
    else:
        activation[index] = source[patch.hook_name][index]
