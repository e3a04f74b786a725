"""Which component variant a config asks for: the only place that reads the config's switches to pick a class.

The components themselves never choose between variants, so adding one (a new normalisation, an
attention with a different positional scheme) means one class and one line here.
"""

from __future__ import annotations

from torch import nn

from interp_transformer.components.attention import Attention
from interp_transformer.components.layer_norm import LayerNorm, LayerNormPre
from interp_transformer.components.mlp import MLP, GatedMLP
from interp_transformer.components.rms_norm import RMSNorm, RMSNormPre
from interp_transformer.components.rotary import RotaryAttention
from interp_transformer.config import TransformerConfig

NORMALIZATIONS: dict[str, type[nn.Module]] = {"LN": LayerNorm, "LNPre": LayerNormPre, "RMS": RMSNorm, "RMSPre": RMSNormPre}


def make_layer_norm(cfg: TransformerConfig) -> nn.Module | None:
    """The normalisation module the config asks for (None when the model has none)."""
    return NORMALIZATIONS[cfg.normalization_type](cfg) if cfg.normalization_type is not None else None


def make_attention(cfg: TransformerConfig, layer: int) -> Attention:
    """Rotary attention for ``positional_embedding_type="rotary"``, plain attention otherwise."""
    return RotaryAttention(cfg, layer) if cfg.positional_embedding_type == "rotary" else Attention(cfg, layer)


def make_mlp(cfg: TransformerConfig) -> MLP:
    """The gated MLP (Llama) for ``gated_mlp``, the plain one otherwise."""
    return GatedMLP(cfg) if cfg.gated_mlp else MLP(cfg)
