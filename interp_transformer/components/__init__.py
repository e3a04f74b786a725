"""The parts a transformer is built from, one file each; ``factories`` picks the variant a config asks for."""

from interp_transformer.components.attention import Attention as Attention
from interp_transformer.components.block import (
    ParallelTransformerBlock as ParallelTransformerBlock,
    TransformerBlock as TransformerBlock,
)
from interp_transformer.components.embed import Embed as Embed, PosEmbed as PosEmbed
from interp_transformer.components.layer_norm import LayerNorm as LayerNorm, LayerNormPre as LayerNormPre
from interp_transformer.components.mlp import MLP as MLP, GatedMLP as GatedMLP
from interp_transformer.components.rms_norm import RMSNorm as RMSNorm, RMSNormPre as RMSNormPre
from interp_transformer.components.rotary import RotaryAttention as RotaryAttention
from interp_transformer.components.unembed import Unembed as Unembed
