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
