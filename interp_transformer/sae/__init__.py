"""Sparse dictionaries: SAEs and transcoders in SAELens's format, spliced into a model's hook points."""

from interp_transformer.sae.config import SAEConfig as SAEConfig
from interp_transformer.sae.dictionary import SparseAutoencoder as SparseAutoencoder
from interp_transformer.sae.transcoder import Transcoder as Transcoder
from interp_transformer.sae.saelens_format import load_dictionary as load_dictionary
from interp_transformer.sae.splice import (
    replaced_hook as replaced_hook,
    run_with_saes as run_with_saes,
    sae_hook_name as sae_hook_name,
    splice as splice,
)
from interp_transformer.sae.patching import (
    FeatureAttribution as FeatureAttribution,
    attribute_features as attribute_features,
    patch_features as patch_features,
)
from interp_transformer.sae.features import (
    FeatureActivations as FeatureActivations,
    top_activating_contexts as top_activating_contexts,
    top_activating_contexts_in_corpus as top_activating_contexts_in_corpus,
)
from interp_transformer.sae.logit_effects import (
    LogitEffects as LogitEffects,
    feature_logit_weights as feature_logit_weights,
    logit_effects as logit_effects,
)
from interp_transformer.sae.training import train_sae as train_sae
from interp_transformer.sae.embedded import embedded_dictionaries as embedded_dictionaries, load_embedded as load_embedded
