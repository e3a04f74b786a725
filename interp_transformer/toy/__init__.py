"""The embedded default models shipped inside the package."""

from interp_transformer.toy.registry import embedded_models as embedded_models
