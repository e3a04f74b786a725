"""TransformerLens's activation-patching experiments, by the same names, semantics and result shapes.

Each runs the corrupted tokens with one piece of the clean cache patched in per location and
returns ``patching_metric`` of the patched logits, exactly as ``transformer_lens.patching`` does,
but many locations per forward (see ``sweep.py``). Results are ``PatchingResult`` tensors with
named axes (``.to_dataframe()``, ``.heatmap()``). Every function also takes the keywords
``memory_budget``, ``max_locations_per_forward``, ``progress`` and ``attention_mask``.

Two additions: ``get_act_patch_resid_post``, and a metric may return one value per prompt
(``[batch]``), which adds a trailing ``batch`` axis. ``generic_activation_patch`` takes
TransformerLens's ``patch_setter`` functions unchanged.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import pandas as pd
from torch import Tensor

from interp_transformer import names
from interp_transformer.patching.results import PatchingResult, stack_results
from interp_transformer.patching.sites import Patch, PatchLocation, normalize_axes, site_grid
from interp_transformer.patching.sweep import check_tokens, grid_result, patch_locations

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

Metric = Callable[[Tensor], Tensor]
Cache = Mapping[str, Tensor]
HEAD_ACTIVATIONS = ("z", "q", "k", "v", "pattern")
BLOCK_ACTIVATIONS = ("resid_pre", "attn_out", "mlp_out")


def _experiment(model, corrupted_tokens, clean_cache, metric, site: str, axes: tuple, options: dict) -> PatchingResult:
    return _experiments(model, corrupted_tokens, clean_cache, metric, [(site, axes)], options)[0]


def _experiments(
    model, corrupted_tokens, clean_cache, metric, specs: Sequence[tuple[str, tuple]], options: dict
) -> list[PatchingResult]:
    """Several grids in one sweep (so they share forwards), split back into one result each."""
    tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    grids = [site_grid(model, site, axes, tokens.shape[1]) for site, axes in specs]
    options.setdefault("description", "patching " + ", ".join(site for site, _ in specs))
    flat = patch_locations(model, tokens, clean_cache, metric, [loc for grid in grids for loc in grid.locations], **options)
    results, begin = [], 0
    for grid in grids:
        size = len(grid.locations)
        title = f"patching {grid.site} by {', '.join(grid.axes)}"
        results.append(grid_result(model, tokens, flat[begin : begin + size], grid.shape, grid.axes, title=title))
        begin += size
    return results


# --------------------------------------------------------------- residual stream and layer outputs [layer pos]
def get_act_patch_resid_pre(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch the residual stream entering each block at each position: ``[layer pos]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "resid_pre", ("layer", "pos"), options)


def get_act_patch_resid_mid(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch the residual stream between attention and MLP at each layer and position: ``[layer pos]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "resid_mid", ("layer", "pos"), options)


def get_act_patch_resid_post(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch the residual stream leaving each block at each position: ``[layer pos]`` (not in TransformerLens)."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "resid_post", ("layer", "pos"), options)


def get_act_patch_attn_out(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each attention layer's output at each position: ``[layer pos]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "attn_out", ("layer", "pos"), options)


def get_act_patch_mlp_out(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each MLP layer's output at each position: ``[layer pos]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "mlp_out", ("layer", "pos"), options)


# ------------------------------------------------------------------------------- heads by position [layer pos head]
def get_act_patch_attn_head_out_by_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's output ``z`` at one position at a time: ``[layer pos head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "z", ("layer", "pos", "head_index"), options)


def get_act_patch_attn_head_q_by_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's query at one position at a time: ``[layer pos head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "q", ("layer", "pos", "head_index"), options)


def get_act_patch_attn_head_k_by_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's key at one position at a time: ``[layer pos head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "k", ("layer", "pos", "head_index"), options)


def get_act_patch_attn_head_v_by_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's value at one position at a time: ``[layer pos head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "v", ("layer", "pos", "head_index"), options)


def get_act_patch_attn_head_pattern_by_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's attention pattern one query (destination) row at a time: ``[layer head_index query_pos]``."""
    return _experiment(
        model, corrupted_tokens, clean_cache, patching_metric, "pattern", ("layer", "head_index", "query_pos"), options
    )


def get_act_patch_attn_head_pattern_dest_src_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each single entry of each head's pattern: ``[layer head_index query_pos key_pos]``."""
    axes = ("layer", "head_index", "query_pos", "key_pos")
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "pattern", axes, options)


# ---------------------------------------------------------------------------- heads at every position [layer head]
def get_act_patch_attn_head_out_all_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's output ``z`` at every position at once: ``[layer head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "z", ("layer", "head_index"), options)


def get_act_patch_attn_head_q_all_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's queries at every position: ``[layer head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "q", ("layer", "head_index"), options)


def get_act_patch_attn_head_k_all_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's keys at every position: ``[layer head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "k", ("layer", "head_index"), options)


def get_act_patch_attn_head_v_all_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's values at every position: ``[layer head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "v", ("layer", "head_index"), options)


def get_act_patch_attn_head_pattern_all_pos(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, patching_metric: Metric, **options: Any
) -> PatchingResult:
    """Patch each head's whole attention pattern: ``[layer head_index]``."""
    return _experiment(model, corrupted_tokens, clean_cache, patching_metric, "pattern", ("layer", "head_index"), options)


# ------------------------------------------------------------------------------------------------ "every" helpers
def get_act_patch_block_every(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, metric: Metric, **options: Any
) -> PatchingResult:
    """``resid_pre``, ``attn_out`` and ``mlp_out`` by layer and position, stacked: ``[activation=3 layer pos]``."""
    specs = [(site, ("layer", "pos")) for site in BLOCK_ACTIVATIONS]
    parts = _experiments(model, corrupted_tokens, clean_cache, metric, specs, options)
    return stack_results(parts, BLOCK_ACTIVATIONS, parts[0].axes, parts[0].labels, title="patching every block output")


def get_act_patch_attn_head_all_pos_every(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, metric: Metric, **options: Any
) -> PatchingResult:
    """Each head's output, query, key, value and pattern at every position: ``[activation=5 layer head_index]``."""
    specs = [(site, ("layer", "head_index")) for site in HEAD_ACTIVATIONS]
    parts = _experiments(model, corrupted_tokens, clean_cache, metric, specs, options)
    return stack_results(parts, HEAD_ACTIVATIONS, parts[0].axes, parts[0].labels, title="patching every head activation")


def get_act_patch_attn_head_by_pos_every(
    model: "HookedTransformer", corrupted_tokens: Tensor, clean_cache: Cache, metric: Metric, **options: Any
) -> PatchingResult:
    """Each head's output, query, key, value and pattern row by position: ``[activation=5 layer pos head_index]``.

    The pattern is patched one query row at a time (TransformerLens's ``pattern_by_pos``), laid out as ``pos``.
    """
    specs = [(site, ("layer", "pos", "head_index")) for site in HEAD_ACTIVATIONS[:4]]
    specs.append(("pattern", ("layer", "query_pos", "head_index")))
    parts = _experiments(model, corrupted_tokens, clean_cache, metric, specs, options)
    return stack_results(
        parts, HEAD_ACTIVATIONS, parts[0].axes, parts[0].labels, title="patching every head activation by position"
    )


# ------------------------------------------------------------------------------------- TransformerLens's generic API
def generic_activation_patch(
    model: "HookedTransformer",
    corrupted_tokens: Tensor,
    clean_cache: Cache,
    patching_metric: Metric,
    patch_setter: Callable[[Tensor, Sequence[int], Tensor], Tensor],
    activation_name: str,
    index_axis_names: Sequence[str] | None = None,
    index_df: pd.DataFrame | None = None,
    **options: Any,
) -> PatchingResult:
    """TransformerLens's ``generic_activation_patch``: ``patch_setter(corrupted_activation, index, clean_activation)``
    edits one run's ``[batch ...]`` activation for ``index`` (layer first).

    With ``index_axis_names`` every combination is patched and the result has one axis per name; with
    ``index_df`` (one row per index) the result is flat, one value per row (axis ``location``).
    ``return_index_df`` is not offered: the index frame is ``index_df`` or ``make_df_from_ranges``.
    """
    tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    if (index_axis_names is None) == (index_df is None):
        raise ValueError("pass exactly one of index_axis_names (patch every combination) or index_df (one row per patch)")
    if index_df is None:
        axes = normalize_axes(index_axis_names)
        shape = tuple(_axis_size(model, axis, tokens.shape[1]) for axis in axes)
        rows = list(itertools.product(*(range(size) for size in shape)))
    else:
        axes, rows = ("location",), [tuple(int(v) for v in row) for row in index_df.itertuples(index=False)]
        shape = (len(rows),)
    locations = [
        PatchLocation((Patch(names.get_act_name(activation_name, row[0]), setter=patch_setter, setter_index=row),))
        for row in rows
    ]
    options.setdefault("description", f"patching {activation_name}")
    values = patch_locations(model, tokens, clean_cache, patching_metric, locations, **options)
    return grid_result(model, tokens, values, shape, axes, title=f"patching {activation_name}")


def make_df_from_ranges(column_max_ranges: Sequence[int], column_names: Sequence[str]) -> pd.DataFrame:
    """Every combination of ``range(max)`` per column, last column fastest (TransformerLens's helper)."""
    rows = list(itertools.product(*(range(size) for size in column_max_ranges)))
    return pd.DataFrame(rows, columns=list(column_names))


def _axis_size(model: "HookedTransformer", axis: str, n_pos: int) -> int:
    sizes = {"layer": model.cfg.n_layers, "pos": n_pos, "query_pos": n_pos, "key_pos": n_pos, "head_index": model.cfg.n_heads}
    if axis not in sizes:
        raise ValueError(f"index axis {axis!r} is not one of {sorted(sizes)} (or TransformerLens's head, dest_pos, src_pos)")
    return sizes[axis]
