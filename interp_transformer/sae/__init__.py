"""Sparse dictionaries: SAEs and transcoders in SAELens's format, spliced into a model's hook points."""

from interp_transformer.sae.config import SAEConfig as SAEConfig
from interp_transformer.sae.dictionary import SparseAutoencoder as SparseAutoencoder
from interp_transformer.sae.transcoder import Transcoder as Transcoder
