"""The embedded-model lookup lives in the core now (``loading.embedded``); these names keep working."""

from interp_transformer.loading.embedded import WEIGHTS_DIR as WEIGHTS_DIR, embedded_models as embedded_models
