"""Moved to ``interp_transformer.activation_cache.analysis``; this name keeps old imports working."""

from interp_transformer.activation_cache.analysis import (
    ResidualStreamAnalyses as ResidualStreamAnalyses,
    Stack as Stack,
    TokenSpec as TokenSpec,
    accumulated_bias as accumulated_bias,
    require_model as require_model,
    tokens_to_residual_directions as tokens_to_residual_directions,
    weight_like as weight_like,
)
