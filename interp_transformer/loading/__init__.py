"""Loading pretrained weights: hub names, embedded models and local directories."""

from interp_transformer.loading.pretrained import (
    available_models as available_models,
    load_pretrained as load_pretrained,
)
