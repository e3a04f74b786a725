"""One transformer block: resid_pre -> attention -> resid_mid -> MLP -> resid_post, or attention and MLP side by side."""

from __future__ import annotations

import einops
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from interp_transformer.components.kv_cache import KeyValueCacheEntry
from interp_transformer.components.factories import make_attention, make_layer_norm, make_mlp
from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookPoint


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block. Attention-only configs have no ``ln2``, ``mlp`` or ``hook_resid_mid``."""

    def __init__(self, cfg: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.hook_resid_pre = HookPoint()  # [batch pos d_model]
        if cfg.use_split_qkv_input:
            self.hook_q_input = HookPoint()  # [batch pos head_index d_model]
            self.hook_k_input = HookPoint()
            self.hook_v_input = HookPoint()
        self.ln1 = make_layer_norm(cfg) or nn.Identity()
        self.attn = make_attention(cfg, layer)
        self.hook_attn_out = HookPoint()  # [batch pos d_model]
        if not cfg.attn_only:
            if not cfg.parallel_attn_mlp:
                self.hook_resid_mid = HookPoint()
            if cfg.use_hook_mlp_in:
                self.hook_mlp_in = HookPoint()
            self.ln2 = make_layer_norm(cfg) or nn.Identity()
            self.mlp = make_mlp(cfg)
            self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()  # [batch pos d_model]

    def forward(
        self,
        resid_pre: Float[Tensor, "batch pos d_model"],
        allowed: Bool[Tensor, "batch 1 query_pos key_pos"] | None = None,
        shortformer_pos_embed: Float[Tensor, "batch pos d_model"] | None = None,
        past_kv_cache_entry: KeyValueCacheEntry | None = None,
        positions: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        if self.cfg.use_split_qkv_input:
            q_in, k_in, v_in = (self._split(hook, resid_pre) for hook in (self.hook_q_input, self.hook_k_input, self.hook_v_input))
            q_in, k_in, v_in = self.ln1(q_in), self.ln1(k_in), self.ln1(v_in)
        else:
            q_in = k_in = v_in = self.ln1(resid_pre)
        if shortformer_pos_embed is not None:  # positions steer where heads look, never what they move
            pos = shortformer_pos_embed.unsqueeze(-2) if q_in.ndim == 4 else shortformer_pos_embed
            q_in = k_in = q_in + pos
        attn_out = self.attn(q_in, k_in, v_in, allowed, past_kv_cache_entry, positions)
        attn_out = self.hook_attn_out(attn_out)
        if self.cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        return self.add_mlp(resid_pre, attn_out)

    def add_mlp(self, resid_pre: Float[Tensor, "batch pos d_model"], attn_out: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        """resid_mid = resid_pre + attn_out; resid_post = resid_mid + mlp(ln2(resid_mid))."""
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_in = self.hook_mlp_in(resid_mid.clone()) if self.cfg.use_hook_mlp_in else resid_mid
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid_mid + mlp_out)

    def _split(self, hook: HookPoint, resid: Tensor) -> Float[Tensor, "batch pos head_index d_model"]:
        return hook(einops.repeat(resid, "batch pos d_model -> batch pos head_index d_model", head_index=self.cfg.n_heads).clone())


class ParallelTransformerBlock(TransformerBlock):
    """GPT-NeoX / GPT-J block: attention and MLP both read ``resid_pre`` (through ``ln1`` and ``ln2``).

    ``resid_post = resid_pre + attn_out + mlp_out``. There is no ``hook_resid_mid``, as in
    TransformerLens (whose parallel blocks never fire it); ``hook_mlp_in`` holds ``resid_pre``.
    """

    def add_mlp(self, resid_pre: Float[Tensor, "batch pos d_model"], attn_out: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        mlp_in = self.hook_mlp_in(resid_pre.clone()) if self.cfg.use_hook_mlp_in else resid_pre
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid_pre + attn_out + mlp_out)


def make_block(cfg: TransformerConfig, layer: int) -> TransformerBlock:
    """The block variant the config asks for."""
    return ParallelTransformerBlock(cfg, layer) if cfg.parallel_attn_mlp else TransformerBlock(cfg, layer)
