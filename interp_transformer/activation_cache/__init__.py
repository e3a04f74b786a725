"""The activation cache: one forward pass's activations, how they are captured, saved, and read.

- ``cache.py``: ``ActivationCache``, a mapping from hook name (or TransformerLens shorthand) to activation.
- ``caching.py``: ``run_with_cache``, which hooks only the names a filter selects.
- ``analysis.py``: residual-stream analyses mixed into the cache (``accumulated_resid``, ``decompose_resid``,
  ``stack_head_results``, ``logit_attrs``, ``apply_ln_to_stack`` ...).
- ``logit_lens.py``: each accumulated stream read through the final norm and the unembed.
- ``cache_io.py``: ``save`` / ``load`` as a safetensors file plus a JSON sidecar.
"""

from interp_transformer.activation_cache.analysis import (
    ResidualStreamAnalyses as ResidualStreamAnalyses,
    accumulated_bias as accumulated_bias,
    tokens_to_residual_directions as tokens_to_residual_directions,
)
from interp_transformer.activation_cache.cache import ActivationCache as ActivationCache
from interp_transformer.activation_cache.cache_io import load_cache as load_cache, save_cache as save_cache
from interp_transformer.activation_cache.caching import (
    NamesFilter as NamesFilter,
    position_axis as position_axis,
    resolve_cache_filter as resolve_cache_filter,
    run_with_cache as run_with_cache,
)
from interp_transformer.activation_cache.logit_lens import (
    LensLogits as LensLogits,
    logit_lens as logit_lens,
    logit_lens_top_tokens as logit_lens_top_tokens,
)
