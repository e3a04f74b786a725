"""Loading pretrained weights as pure functions: hub names, embedded models and local directories -> (cfg, state_dict, tokenizer)."""

from interp_transformer.loading.pretrained import (
    PretrainedWeights as PretrainedWeights,
    available_models as available_models,
    load_pretrained as load_pretrained,
    load_weights as load_weights,
)
