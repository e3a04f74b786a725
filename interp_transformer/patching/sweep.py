"""The generic batched patcher: many patch locations per forward, chunked to a memory budget.

``patch_locations`` runs the target input (usually the corrupted prompts) once per location with
that location's patches copied in from ``source`` (usually the clean run's cache), and returns the
metric of each patched run. Locations are packed into the batch (see ``runner.py``) as many per
forward as ``memory_budget`` allows. Each copy in the batch runs exactly the operations of its own
one-location forward (``max_locations_per_forward=1``) on the same values, so the results are the
same; bit for bit wherever the matrix-multiply library rounds a row the same whatever the number of
rows (on CPU with one thread and at least 4 rows per matmul, which the tests check; MKL picks
another kernel below 4 rows, and several threads split rows unevenly). ``patch_site`` does the same
for every location of one site at one granularity and returns a ``PatchingResult`` with named axes.

Denoising (TransformerLens's convention): target = corrupted tokens, source = clean cache.
Noising: target = clean tokens, source = corrupted cache.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp_transformer import names
from interp_transformer.patching.budget import DEFAULT_MEMORY_BUDGET, MemoryBudget, bytes_per_location, locations_per_forward
from interp_transformer.patching.metrics import AnswerMetric
from interp_transformer.patching.results import PatchingResult
from interp_transformer.patching.runner import TargetRun, run_target, score_copies, start_layer
from interp_transformer.patching.sites import POSITION_AXES, PatchLocation, hook_layer, site_grid

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

Metric = Callable[[Tensor], Tensor]
EXPLICIT_ATTENTION_HOOKS = (".hook_pattern", ".hook_attn_scores")
# Hooking these makes the layer leave its fused kernel (components/attention.py, layer_norm.py).
KERNEL_SWITCHING_HOOKS = (*EXPLICIT_ATTENTION_HOOKS, "hook_scale", "hook_normalized")


def patch_locations(
    model: "HookedTransformer",
    target_tokens: Tensor,
    source: Mapping[str, Tensor] | None,
    metric: Metric,
    locations: Sequence[PatchLocation],
    *,
    attention_mask: Tensor | None = None,
    memory_budget: MemoryBudget = DEFAULT_MEMORY_BUDGET,
    max_locations_per_forward: int | None = None,
    progress: bool = True,
    description: str = "patching",
) -> Tensor:
    """The metric of each location's patched run: ``[n_locations]``, or ``[n_locations batch]`` for a per-prompt metric.

    ``source`` maps hook names to ``[batch ...]`` activations (an ``ActivationCache`` works); it may be
    None when every patch carries its own ``value``. ``memory_budget`` (bytes, or ``"512MB"``) bounds
    how many locations share a forward; ``max_locations_per_forward`` caps it (1 = one forward per location).
    """
    tokens = check_tokens(model, target_tokens, "target_tokens")
    if not callable(metric):
        raise TypeError(f"metric must be a callable logits -> tensor, got {type(metric).__name__}")
    locations = check_locations(model, locations)
    chunk_size = locations_per_forward(
        memory_budget, _bytes_per_location(model, metric, locations, tokens), max_locations_per_forward
    )
    source = gather_source(model, source, locations, tokens.shape)
    target = run_target(model, tokens, metric, attention_mask)
    return run_in_chunks(model, metric, target, locations, source, chunk_size, progress, description)


def run_in_chunks(
    model: "HookedTransformer",
    metric: Metric,
    target: TargetRun,
    locations: list[PatchLocation],
    source: Mapping[str, Tensor] | None,
    chunk_size: int,
    progress: bool,
    description: str,
) -> Tensor:
    """Score locations ``chunk_size`` at a time. A chunk holds locations with the same start layer and
    the same hooks on kernel-switching hook points.

    Each forward starts at its locations' first patched layer, so no copy recomputes a layer it
    shares with the target run, and every copy runs exactly the operations its own one-location
    forward would, on the same values. Mixing would break that: a hook on an attention pattern or a
    LayerNorm scale switches that layer from a fused kernel to the written-out computation (other
    rounding) for every copy in the forward.
    """
    baseline = target.baseline
    results = torch.empty((len(locations), *baseline.shape), dtype=baseline.dtype, device=baseline.device)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, location in enumerate(locations):
        start = min(start_layer(p, model.cfg.n_layers) for p in location.patches)
        switching = sorted({p.hook_name for p in location.patches if p.hook_name.endswith(KERNEL_SWITCHING_HOOKS)})
        groups[(start, tuple(switching))].append(i)
    with tqdm(total=len(locations), disable=not progress, desc=description, unit="patch") as bar:
        for key in sorted(groups):
            group = groups[key]
            for begin in range(0, len(group), chunk_size):
                chunk = group[begin : begin + chunk_size]
                results[chunk] = score_copies(model, metric, target, [locations[i] for i in chunk], source).to(results.dtype)
                bar.update(len(chunk))
    return results


def patch_site(
    model: "HookedTransformer",
    target_tokens: Tensor,
    source: Mapping[str, Tensor],
    metric: Metric,
    site: str,
    axes: Sequence[str] = ("layer", "pos"),
    **options: Any,
) -> PatchingResult:
    """Patch every location of ``site`` at granularity ``axes`` (see ``sites.py``); result shape = the grid.

    ``patch_site(model, corrupted_tokens, clean_cache, metric, "z", ("layer", "head_index"))`` patches
    each head's output at every position. A per-prompt metric adds a trailing ``batch`` axis.
    ``options`` are ``patch_locations``'s keywords.
    """
    tokens = check_tokens(model, target_tokens, "target_tokens")
    grid = site_grid(model, site, axes, tokens.shape[1])
    options.setdefault("description", f"patching {site}")
    values = patch_locations(model, tokens, source, metric, grid.locations, **options)
    return grid_result(model, tokens, values, grid.shape, grid.axes, title=f"patching {site} by {', '.join(grid.axes)}")


def grid_result(
    model: "HookedTransformer",
    tokens: Tensor,
    values: Tensor,
    shape: tuple,
    axes: tuple,
    title: str = "",
    value_name: str = "metric",
) -> PatchingResult:
    """Reshape flat location results to ``shape`` and name the axes (a per-prompt metric adds ``batch``)."""
    per_prompt = values.ndim == 2
    values = values.reshape(*shape, *values.shape[1:])
    axes = (*axes, "batch") if per_prompt else axes
    return PatchingResult(values, axes, position_labels(model, tokens, axes), value_name=value_name, title=title)


def position_labels(model: "HookedTransformer", tokens: Tensor, axes: Sequence[str]) -> dict[str, list[str]]:
    """The first prompt's tokens for every position axis (none without a tokenizer)."""
    if model.tokenizer is None or not any(axis in POSITION_AXES for axis in axes):
        return {}
    text = model.to_str_tokens(tokens[0])
    return {axis: list(text) for axis in axes if axis in POSITION_AXES}


# ----------------------------------------------------------------------------- checks
def check_tokens(model: "HookedTransformer", tokens: Any, what: str) -> Tensor:
    if not isinstance(tokens, Tensor):
        raise TypeError(
            f"{what} must be token ids [batch pos] (a tensor; use model.to_tokens(prompts)), got {type(tokens).__name__}"
        )
    if tokens.ndim != 2:
        fix = " (add a batch axis with tokens.unsqueeze(0))" if tokens.ndim == 1 else ""
        raise ValueError(f"{what} must have shape [batch pos], got {tuple(tokens.shape)}{fix}")
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(f"{what} must hold integer token ids, got dtype {tokens.dtype}")
    return tokens.to(model.device)


def check_same_shape(clean_tokens: Tensor, corrupted_tokens: Tensor) -> None:
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError(
            f"clean tokens {tuple(clean_tokens.shape)} and corrupted tokens {tuple(corrupted_tokens.shape)} differ in shape; "
            "patching needs the same number of prompts and the same token length in both, so positions line up: "
            "choose corruptions with the same token count (compare model.to_str_tokens of each) or pad both to one length"
        )


def check_locations(model: "HookedTransformer", locations: Sequence[PatchLocation]) -> list[PatchLocation]:
    locations = list(locations)
    for location in locations:
        if not isinstance(location, PatchLocation):
            raise TypeError(f"locations must be PatchLocation objects (see patching.sites), got {type(location).__name__}")
        for patch in location.patches:
            model.resolve_hook_names(patch.hook_name)  # KeyError with the closest names if unknown
    return locations


def gather_source(
    model: "HookedTransformer", source: Mapping[str, Tensor] | None, locations: list[PatchLocation], target_shape: torch.Size
) -> dict[str, Tensor]:
    """The source activations the patches read, checked against the target's batch and length, on the model's device."""
    needed = sorted({p.hook_name for location in locations for p in location.patches if p.value is None})
    if needed and source is None:
        raise ValueError(f"patches on {needed[:3]} take their values from a source cache, but source is None")
    batch, n_pos = target_shape
    shapes = names.hook_shapes(model.cfg)
    gathered = {}
    for name in needed:
        if name not in source:
            raise KeyError(
                f"the source cache has no {name!r}; cache it (run_with_cache with no names_filter, or one that includes it)"
            )
        activation = source[name]
        expected = names.concrete_shape(shapes[name], model.cfg, batch, n_pos)
        if tuple(activation.shape) != expected:
            raise ValueError(
                f"the source (clean) cache's {name} has shape {tuple(activation.shape)}, but the target (corrupted) tokens "
                f"{tuple(target_shape)} need {expected}: clean and corrupted inputs must have the same batch size and token "
                "length (and the cache its batch axis); rerun run_with_cache on prompts of the corrupted tokens' shape"
            )
        gathered[name] = activation.to(model.device)
    return gathered


def _bytes_per_location(model: "HookedTransformer", metric: Metric, locations: list[PatchLocation], tokens: Tensor) -> int:
    hooks = {p.hook_name for location in locations for p in location.patches}
    n_layers = model.cfg.n_layers
    full_logits = not isinstance(metric, AnswerMetric) or any(hook_layer(h, n_layers) == n_layers for h in hooks)
    explicit = any(h.endswith(EXPLICIT_ATTENTION_HOOKS) for h in hooks)
    return bytes_per_location(model.cfg, tokens.shape[0], tokens.shape[1], full_logits, explicit)
