"""Converter for the Llama family (LlamaForCausalLM, MistralForCausalLM without sliding windows) and Qwen2.

Hugging Face stores each projection as an ``nn.Linear`` weight ``[out in]``; we transpose and split
``out`` per head into ``[head_index d_model d_head]``. Qwen2 is Llama with q/k/v biases.
RMSNorm, rotary embeddings, the gated SiLU MLP and grouped-query attention are config switches
(``normalization_type="RMS"``, ``positional_embedding_type="rotary"``, ``gated_mlp``,
``n_key_value_heads``). Llama has no other biases: ours are zero.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from interp_transformer.activation_functions import HF_ACTIVATION_NAMES, activation_from_hf
from interp_transformer.config import TransformerConfig
from interp_transformer.loading.conversion import From, NameMap, Zeros, convert_with_name_map
from interp_transformer.loading.hf_files import TensorTaker, check_config_fields

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
HUB_NAMES: dict[str, str] = {}
ACTIVATIONS = HF_ACTIVATION_NAMES  # the one table, shared with config and MLP
UNDERSTOOD = frozenset(
    {
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
        "rope_parameters", "rope_theta", "rope_scaling", "attention_bias", "mlp_bias", "tie_word_embeddings",
        "sliding_window", "use_sliding_window", "max_window_layers", "layer_types",
        # Dropout and tensor-parallel pretraining splits do not change the forward pass at inference.
        "attention_dropout", "pretraining_tp",
    }
)


def convert_config(hf: dict[str, Any], name: str) -> TransformerConfig:
    architecture = (hf.get("architectures") or ["LlamaForCausalLM"])[0]
    check_config_fields(hf, UNDERSTOOD, architecture)
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"{architecture} rope type {rope.get('rope_type', rope.get('type'))!r} is not supported; only 'default' is")
    if hf.get("use_sliding_window") or (architecture == "MistralForCausalLM" and hf.get("sliding_window") is not None):
        raise ValueError(f"{architecture} sliding_window={hf.get('sliding_window')!r} is not supported (full causal attention only)")
    if any(kind != "full_attention" for kind in hf.get("layer_types") or []):
        raise ValueError(f"{architecture} layer_types {sorted(set(hf['layer_types']))} are not supported; only 'full_attention'")
    if hf.get("mlp_bias"):
        raise ValueError(f"{architecture} mlp_bias=True is not supported")
    act_fn = activation_from_hf(hf.get("hidden_act", "silu"), architecture, "hidden_act")
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    d_head = hf.get("head_dim") or d_model // n_heads
    n_kv_heads = hf.get("num_key_value_heads") or n_heads
    return TransformerConfig(
        d_model=d_model,
        n_layers=hf["num_hidden_layers"],
        n_heads=n_heads,
        d_head=d_head,
        d_mlp=hf["intermediate_size"],
        d_vocab=hf["vocab_size"],
        n_ctx=hf["max_position_embeddings"],
        layer_norm_eps=hf.get("rms_norm_eps", 1e-6),
        init_range=hf.get("initializer_range", 0.02),
        act_fn=act_fn,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        gated_mlp=True,
        n_key_value_heads=n_kv_heads if n_kv_heads != n_heads else None,
        allow_d_model_mismatch=d_model != n_heads * d_head,
        default_prepend_bos=True,
        model_name=name,
        original_architecture=architecture,
    )


QUERY = "(head_index d_head) d_model -> head_index d_model d_head"
KEY_VALUE = "(kv_head d_head) d_model -> kv_head d_model d_head"  # fewer heads under grouped-query attention
# Our name <- Hugging Face's ("model." prefix removed); {L} is the layer index. q/k/v/o biases exist in Qwen2
# and attention_bias=True checkpoints only; Llama has no MLP biases.
NAME_MAP: NameMap = {
    "embed.W_E": From("embed_tokens.weight", "d_vocab d_model"),
    "blocks.{L}.ln1.w": From("layers.{L}.input_layernorm.weight", "d_model"),
    "blocks.{L}.attn.W_Q": From("layers.{L}.self_attn.q_proj.weight", QUERY),
    "blocks.{L}.attn.W_K": From("layers.{L}.self_attn.k_proj.weight", KEY_VALUE),
    "blocks.{L}.attn.W_V": From("layers.{L}.self_attn.v_proj.weight", KEY_VALUE),
    "blocks.{L}.attn.b_Q": From("layers.{L}.self_attn.q_proj.bias", "(head_index d_head) -> head_index d_head", optional=True),
    "blocks.{L}.attn.b_K": From("layers.{L}.self_attn.k_proj.bias", "(kv_head d_head) -> kv_head d_head", optional=True),
    "blocks.{L}.attn.b_V": From("layers.{L}.self_attn.v_proj.bias", "(kv_head d_head) -> kv_head d_head", optional=True),
    "blocks.{L}.attn.W_O": From("layers.{L}.self_attn.o_proj.weight", "d_model (head_index d_head) -> head_index d_head d_model"),
    "blocks.{L}.attn.b_O": From("layers.{L}.self_attn.o_proj.bias", "d_model", optional=True),
    "blocks.{L}.ln2.w": From("layers.{L}.post_attention_layernorm.weight", "d_model"),
    "blocks.{L}.mlp.W_gate": From("layers.{L}.mlp.gate_proj.weight", "d_mlp d_model -> d_model d_mlp"),
    "blocks.{L}.mlp.W_in": From("layers.{L}.mlp.up_proj.weight", "d_mlp d_model -> d_model d_mlp"),
    "blocks.{L}.mlp.W_out": From("layers.{L}.mlp.down_proj.weight", "d_model d_mlp -> d_mlp d_model"),
    "blocks.{L}.mlp.b_in": Zeros("d_mlp"),
    "blocks.{L}.mlp.b_out": Zeros("d_model"),
    "ln_final.w": From("norm.weight", "d_model"),
}


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face Llama/Qwen2 tensors -> our state dict. Every source tensor must be used and every shape match."""
    state = {key.removeprefix("model."): value for key, value in hf_state.items() if not key.endswith("rotary_emb.inv_freq")}
    take = TensorTaker(state, cfg.original_architecture or "Llama")
    return convert_with_name_map(take, NAME_MAP, cfg, unembed_source="lm_head.weight")
