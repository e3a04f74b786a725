"""Moved to ``interp_transformer.activation_cache.caching``; this name keeps old imports working."""

from interp_transformer.activation_cache.caching import (
    NamesFilter as NamesFilter,
    capture as capture,
    compact as compact,
    position_axes as position_axes,
    position_axis as position_axis,
    resolve_cache_filter as resolve_cache_filter,
    run_with_cache as run_with_cache,
)
