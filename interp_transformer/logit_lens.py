"""Moved to ``interp_transformer.activation_cache.logit_lens``; this name keeps old imports working."""

from interp_transformer.activation_cache.logit_lens import (
    LensLogits as LensLogits,
    logit_lens as logit_lens,
    logit_lens_top_tokens as logit_lens_top_tokens,
)
