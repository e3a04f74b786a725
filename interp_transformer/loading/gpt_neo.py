"""Converter for GPT-Neo (GPTNeoForCausalLM): gpt-neo-125M, 1.3B, 2.7B.

GPT-2's layout with three differences: layers alternate global and local (sliding-window)
attention (``attn_types``, ``window_size``), attention scores are not scaled by
``1/sqrt(d_head)`` (``attn_scale=1``), and q, k, v have no biases (ours are zero). Projections are
``nn.Linear`` weights ``[out in]``, transposed and split per head here.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from interp_transformer.activation_functions import HF_ACTIVATION_NAMES, activation_from_hf
from interp_transformer.config import ATTN_TYPES, TransformerConfig
from interp_transformer.loading.conversion import From, NameMap, Zeros, convert_with_name_map
from interp_transformer.loading.hf_files import TensorTaker, check_config_fields

ARCHITECTURES = ("GPTNeoForCausalLM",)
HUB_NAMES = {f"gpt-neo-{size}": f"EleutherAI/gpt-neo-{size}" for size in ("125M", "1.3B", "2.7B")}
ACTIVATIONS = HF_ACTIVATION_NAMES  # the one table, shared with config and MLP
UNDERSTOOD = frozenset(
    {
        "vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "activation_function",
        "max_position_embeddings", "layer_norm_epsilon", "attention_types", "attention_layers", "window_size",
        "tie_word_embeddings",
        # Dropout and the sequence-summary/classification heads do not change the causal-LM forward pass.
        "embed_dropout", "attention_dropout", "resid_dropout", "classifier_dropout", "summary_type", "summary_use_proj",
        "summary_activation", "summary_first_dropout", "summary_proj_to_labels",
    }
)


def convert_config(hf: dict[str, Any], name: str) -> TransformerConfig:
    check_config_fields(hf, UNDERSTOOD, "GPT-Neo")
    act_fn = activation_from_hf(hf.get("activation_function", "gelu_new"), "GPT-Neo", "activation_function")
    attn_types = hf.get("attention_layers") or _expand_attention_types(hf["attention_types"])
    if any(kind not in ATTN_TYPES for kind in attn_types):
        raise ValueError(f"GPT-Neo attention layer types {sorted(set(attn_types))} are not supported; only {list(ATTN_TYPES)}")
    d_model, n_heads = hf["hidden_size"], hf["num_heads"]
    return TransformerConfig(
        d_model=d_model,
        n_layers=hf["num_layers"],
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=hf.get("intermediate_size") or 4 * d_model,
        d_vocab=hf["vocab_size"],
        n_ctx=hf["max_position_embeddings"],
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        init_range=hf.get("initializer_range", 0.02),
        act_fn=act_fn,
        attn_scale=1.0,  # GPT-Neo was trained without the 1/sqrt(d_head) score scaling
        attn_types=tuple(attn_types),
        window_size=hf.get("window_size", 256),
        model_name=name,
        original_architecture="GPTNeoForCausalLM",
    )


def _expand_attention_types(attention_types: list) -> list[str]:
    """``[[["global", "local"], 12]]`` -> ``["global", "local"] * 12``, as Hugging Face expands it."""
    return [kind for pattern, repeats in attention_types for _ in range(repeats) for kind in pattern]


PER_HEAD_IN = "(head_index d_head) d_model -> head_index d_model d_head"
# Our name <- Hugging Face's ("transformer." prefix removed); {L} is the layer index.
NAME_MAP: NameMap = {
    "embed.W_E": From("wte.weight", "d_vocab d_model"),
    "pos_embed.W_pos": From("wpe.weight", "n_ctx d_model"),
    "blocks.{L}.ln1.w": From("h.{L}.ln_1.weight", "d_model"),
    "blocks.{L}.ln1.b": From("h.{L}.ln_1.bias", "d_model"),
    "blocks.{L}.attn.W_Q": From("h.{L}.attn.attention.q_proj.weight", PER_HEAD_IN),
    "blocks.{L}.attn.W_K": From("h.{L}.attn.attention.k_proj.weight", PER_HEAD_IN),
    "blocks.{L}.attn.W_V": From("h.{L}.attn.attention.v_proj.weight", PER_HEAD_IN),
    "blocks.{L}.attn.b_Q": Zeros("head_index d_head"),
    "blocks.{L}.attn.b_K": Zeros("head_index d_head"),
    "blocks.{L}.attn.b_V": Zeros("head_index d_head"),
    "blocks.{L}.attn.W_O": From("h.{L}.attn.attention.out_proj.weight", "d_model (head_index d_head) -> head_index d_head d_model"),
    "blocks.{L}.attn.b_O": From("h.{L}.attn.attention.out_proj.bias", "d_model"),
    "blocks.{L}.ln2.w": From("h.{L}.ln_2.weight", "d_model"),
    "blocks.{L}.ln2.b": From("h.{L}.ln_2.bias", "d_model"),
    "blocks.{L}.mlp.W_in": From("h.{L}.mlp.c_fc.weight", "d_mlp d_model -> d_model d_mlp"),
    "blocks.{L}.mlp.b_in": From("h.{L}.mlp.c_fc.bias", "d_mlp"),
    "blocks.{L}.mlp.W_out": From("h.{L}.mlp.c_proj.weight", "d_model d_mlp -> d_mlp d_model"),
    "blocks.{L}.mlp.b_out": From("h.{L}.mlp.c_proj.bias", "d_model"),
    "ln_final.w": From("ln_f.weight", "d_model"),
    "ln_final.b": From("ln_f.bias", "d_model"),
}


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face GPT-Neo tensors -> our state dict. Every source tensor must be used and every shape match."""
    skipped = (".attn.attention.bias", ".attn.attention.masked_bias")  # mask buffers in older checkpoints
    state = {key.removeprefix("transformer."): value for key, value in hf_state.items() if not key.endswith(skipped)}
    return convert_with_name_map(TensorTaker(state, "GPT-Neo"), NAME_MAP, cfg, unembed_source="lm_head.weight")
