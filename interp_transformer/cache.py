"""Moved to ``interp_transformer.activation_cache.cache``; this name keeps old imports working."""

from interp_transformer.activation_cache.cache import ActivationCache as ActivationCache
