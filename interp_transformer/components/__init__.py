"""The parts a transformer is built from, one file each."""

from interp_transformer.components.attention import Attention as Attention
from interp_transformer.components.block import TransformerBlock as TransformerBlock
from interp_transformer.components.embed import Embed as Embed, PosEmbed as PosEmbed
from interp_transformer.components.layer_norm import LayerNorm as LayerNorm, LayerNormPre as LayerNormPre
from interp_transformer.components.mlp import MLP as MLP
from interp_transformer.components.unembed import Unembed as Unembed
