"""Converter for GPT-NeoX and Pythia (GPTNeoXForCausalLM).

Rotary embeddings on the first ``rotary_pct`` of each head (``positional_embedding_type="rotary"``
with ``rotary_dim < d_head``), attention and MLP side by side when ``use_parallel_residual``
(``parallel_attn_mlp``), and an unembedding not tied to the embedding. Hugging Face stores each
projection as an ``nn.Linear`` weight ``[out in]``; we transpose and split ``out`` per head.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from interp_transformer.activation_functions import HF_ACTIVATION_NAMES, activation_from_hf
from interp_transformer.config import TransformerConfig
from interp_transformer.loading.conversion import From, NameMap, Zeros, convert_with_name_map
from interp_transformer.loading.hf_files import TensorTaker, check_config_fields

ARCHITECTURES = ("GPTNeoXForCausalLM",)
HUB_NAMES = {
    f"pythia-{size}{suffix}": f"EleutherAI/pythia-{size}{suffix}"
    for size in ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")
    for suffix in ("", "-deduped")
    if not (suffix and size in ("14m", "31m"))  # the two smallest have no deduped twin
} | {"gpt-neox-20b": "EleutherAI/gpt-neox-20b"}
ACTIVATIONS = HF_ACTIVATION_NAMES  # the one table, shared with config and MLP
UNDERSTOOD = frozenset(
    {
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "max_position_embeddings", "layer_norm_eps", "tie_word_embeddings", "use_parallel_residual", "attention_bias",
        "rope_parameters", "rope_scaling", "rotary_pct", "rotary_emb_base", "is_decoder",
        # Dropout and the classification head do not change the causal-LM forward pass at inference.
        "attention_dropout", "hidden_dropout", "classifier_dropout",
    }
)


def convert_config(hf: dict[str, Any], name: str) -> TransformerConfig:
    check_config_fields(hf, UNDERSTOOD, "GPT-NeoX")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"GPT-NeoX rope type {rope.get('rope_type', rope.get('type'))!r} is not supported; only 'default' is")
    act_fn = activation_from_hf(hf.get("hidden_act", "gelu"), "GPT-NeoX", "hidden_act")
    if hf.get("is_decoder"):
        raise ValueError("GPT-NeoX is_decoder=True (cross-attention) is not supported")
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    d_head = d_model // n_heads
    # Older configs spell these rotary_pct / rotary_emb_base; newer ones fold them into rope_parameters.
    rotary_pct = rope.get("partial_rotary_factor", hf.get("rotary_pct", 0.25))
    rotary_dim = int(d_head * rotary_pct)  # Hugging Face truncates the same way
    if rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"GPT-NeoX rotary_pct={rotary_pct} gives {rotary_dim} rotary dimensions of d_head={d_head}; need a positive even number")
    return TransformerConfig(
        d_model=d_model,
        n_layers=hf["num_hidden_layers"],
        n_heads=n_heads,
        d_head=d_head,
        d_mlp=hf["intermediate_size"],
        d_vocab=hf["vocab_size"],
        n_ctx=hf["max_position_embeddings"],
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
        init_range=hf.get("initializer_range", 0.02),
        act_fn=act_fn,
        positional_embedding_type="rotary",
        rotary_dim=rotary_dim,
        rotary_base=float(rope.get("rope_theta", hf.get("rotary_emb_base", 10000.0))),
        parallel_attn_mlp=hf.get("use_parallel_residual", True),
        model_name=name,
        original_architecture="GPTNeoXForCausalLM",
    )


# query_key_value's output axis is laid out per head, [head_index, qkv, d_head] (q, k, v of head 0, then
# of head 1 …), not GPT-2's [qkv, head_index, d_head]: Hugging Face views it as (heads, 3 * d_head) and chunks.
QKV = "(head_index qkv d_head) d_model -> qkv head_index d_model d_head"
QKV_BIAS = "(head_index qkv d_head) -> qkv head_index d_head"
# Our name <- Hugging Face's ("gpt_neox." prefix removed); {L} is the layer index. Biases are absent when attention_bias=False.
NAME_MAP: NameMap = {
    "embed.W_E": From("embed_in.weight", "d_vocab d_model"),
    "blocks.{L}.ln1.w": From("layers.{L}.input_layernorm.weight", "d_model"),
    "blocks.{L}.ln1.b": From("layers.{L}.input_layernorm.bias", "d_model"),
    **{f"blocks.{{L}}.attn.W_{letter}": From("layers.{L}.attention.query_key_value.weight", QKV, part=i) for i, letter in enumerate("QKV")},
    **{
        f"blocks.{{L}}.attn.b_{letter}": From("layers.{L}.attention.query_key_value.bias", QKV_BIAS, part=i, optional=True)
        for i, letter in enumerate("QKV")
    },
    "blocks.{L}.attn.W_O": From("layers.{L}.attention.dense.weight", "d_model (head_index d_head) -> head_index d_head d_model"),
    "blocks.{L}.attn.b_O": From("layers.{L}.attention.dense.bias", "d_model", optional=True),
    "blocks.{L}.ln2.w": From("layers.{L}.post_attention_layernorm.weight", "d_model"),
    "blocks.{L}.ln2.b": From("layers.{L}.post_attention_layernorm.bias", "d_model"),
    "blocks.{L}.mlp.W_in": From("layers.{L}.mlp.dense_h_to_4h.weight", "d_mlp d_model -> d_model d_mlp"),
    "blocks.{L}.mlp.b_in": From("layers.{L}.mlp.dense_h_to_4h.bias", "d_mlp"),
    "blocks.{L}.mlp.W_out": From("layers.{L}.mlp.dense_4h_to_h.weight", "d_model d_mlp -> d_mlp d_model"),
    "blocks.{L}.mlp.b_out": From("layers.{L}.mlp.dense_4h_to_h.bias", "d_model"),
    "ln_final.w": From("final_layer_norm.weight", "d_model"),
    "ln_final.b": From("final_layer_norm.bias", "d_model"),
}


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face GPT-NeoX tensors -> our state dict. Every source tensor must be used and every shape match."""
    skipped = ("rotary_emb.inv_freq", "attention.bias", "attention.masked_bias")  # buffers in older checkpoints
    state = {key.removeprefix("gpt_neox."): value for key, value in hf_state.items() if not key.endswith(skipped)}
    # Pythia's unembedding is its own matrix (embed_out); a tied checkpoint may omit it.
    return convert_with_name_map(TensorTaker(state, "GPT-NeoX"), NAME_MAP, cfg, unembed_source="embed_out.weight")
