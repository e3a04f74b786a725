"""Moved to ``interp_transformer.activation_cache.cache_io`` (and ``check_same_config`` to
``interp_transformer.config_compat``); this name keeps old imports working."""

from interp_transformer.activation_cache.cache_io import (
    FORMAT as FORMAT,
    FORMAT_VERSION as FORMAT_VERSION,
    SIDECAR_FIELDS as SIDECAR_FIELDS,
    SIDECAR_SUFFIX as SIDECAR_SUFFIX,
    TENSOR_SUFFIX as TENSOR_SUFFIX,
    cache_paths as cache_paths,
    load_cache as load_cache,
    save_cache as save_cache,
)
from interp_transformer.config_compat import check_same_config as check_same_config
