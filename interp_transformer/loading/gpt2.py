"""Converter for the GPT-2 family (GPT2LMHeadModel): gpt2, gpt2-medium/large/xl, distilgpt2.

Hugging Face stores GPT-2's projections as ``Conv1D`` weights ``[in out]`` with q, k and v
fused along ``out``; we split them per head into ``[head_index d_model d_head]``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from interp_transformer.activation_functions import HF_ACTIVATION_NAMES, activation_from_hf
from interp_transformer.config import TransformerConfig
from interp_transformer.loading.conversion import From, NameMap, Zeros, convert_with_name_map
from interp_transformer.loading.hf_files import TensorTaker, check_config_fields

ARCHITECTURES = ("GPT2LMHeadModel",)
HUB_NAMES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-small": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
ACTIVATIONS = HF_ACTIVATION_NAMES  # the one table, shared with config and MLP
UNDERSTOOD = frozenset(
    {
        "vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
        "layer_norm_epsilon", "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn",
        "add_cross_attention", "tie_word_embeddings",
        # Dropout and the sequence-summary head only matter for training or GPT2DoubleHeadsModel.
        "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type", "summary_use_proj", "summary_activation",
        "summary_first_dropout", "summary_proj_to_labels",
    }
)


def convert_config(hf: dict[str, Any], name: str) -> TransformerConfig:
    check_config_fields(hf, UNDERSTOOD, "GPT-2")
    _refuse(hf, "add_cross_attention", False, "cross-attention layers are for encoder-decoder use")
    _refuse(hf, "scale_attn_by_inverse_layer_idx", False, "per-layer attention scaling is not implemented")
    act_fn = activation_from_hf(hf.get("activation_function", "gelu_new"), "GPT-2", "activation_function")
    d_model, n_heads = hf["n_embd"], hf["n_head"]
    return TransformerConfig(
        d_model=d_model,
        n_layers=hf["n_layer"],
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=hf.get("n_inner") or 4 * d_model,
        d_vocab=hf["vocab_size"],
        n_ctx=hf["n_positions"],
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        init_range=hf.get("initializer_range", 0.02),
        act_fn=act_fn,
        attn_scale=(d_model // n_heads) ** 0.5 if hf.get("scale_attn_weights", True) else 1.0,
        model_name=name,
        original_architecture="GPT2LMHeadModel",
    )


def _refuse(hf: dict[str, Any], key: str, supported: Any, why: str) -> None:
    if hf.get(key, supported) != supported:
        raise ValueError(f"GPT-2 config {key}={hf[key]!r} is not supported ({why}); only {supported!r} is")


QKV = "d_model (qkv head_index d_head) -> qkv head_index d_model d_head"
QKV_BIAS = "(qkv head_index d_head) -> qkv head_index d_head"
# Our name <- Hugging Face's ("transformer." prefix removed); {L} is the layer index.
NAME_MAP: NameMap = {
    "embed.W_E": From("wte.weight", "d_vocab d_model"),
    "pos_embed.W_pos": From("wpe.weight", "n_ctx d_model"),
    "blocks.{L}.ln1.w": From("h.{L}.ln_1.weight", "d_model"),
    "blocks.{L}.ln1.b": From("h.{L}.ln_1.bias", "d_model"),
    **{f"blocks.{{L}}.attn.W_{letter}": From("h.{L}.attn.c_attn.weight", QKV, part=i) for i, letter in enumerate("QKV")},
    **{f"blocks.{{L}}.attn.b_{letter}": From("h.{L}.attn.c_attn.bias", QKV_BIAS, part=i) for i, letter in enumerate("QKV")},
    "blocks.{L}.attn.W_O": From("h.{L}.attn.c_proj.weight", "(head_index d_head) d_model -> head_index d_head d_model"),
    "blocks.{L}.attn.b_O": From("h.{L}.attn.c_proj.bias", "d_model"),
    "blocks.{L}.ln2.w": From("h.{L}.ln_2.weight", "d_model"),
    "blocks.{L}.ln2.b": From("h.{L}.ln_2.bias", "d_model"),
    "blocks.{L}.mlp.W_in": From("h.{L}.mlp.c_fc.weight", "d_model d_mlp"),
    "blocks.{L}.mlp.b_in": From("h.{L}.mlp.c_fc.bias", "d_mlp"),
    "blocks.{L}.mlp.W_out": From("h.{L}.mlp.c_proj.weight", "d_mlp d_model"),
    "blocks.{L}.mlp.b_out": From("h.{L}.mlp.c_proj.bias", "d_model"),
    "ln_final.w": From("ln_f.weight", "d_model"),
    "ln_final.b": From("ln_f.bias", "d_model"),
}


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face GPT-2 tensors -> our state dict. Every source tensor must be used and every shape match."""
    # The causal-mask buffers of older checkpoints are not weights.
    state = {key.removeprefix("transformer."): v for key, v in hf_state.items() if not key.endswith((".attn.bias", ".attn.masked_bias"))}
    return convert_with_name_map(TensorTaker(state, "GPT-2"), NAME_MAP, cfg, unembed_source="lm_head.weight")
