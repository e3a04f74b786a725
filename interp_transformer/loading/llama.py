"""Converter for the Llama family (LlamaForCausalLM, MistralForCausalLM without sliding windows) and Qwen2.

Hugging Face stores each projection as an ``nn.Linear`` weight ``[out in]``; we transpose and split
``out`` per head into ``[head_index d_model d_head]``. Qwen2 is Llama with q/k/v biases.
RMSNorm, rotary embeddings, the gated SiLU MLP and grouped-query attention are config switches
(``normalization_type="RMS"``, ``positional_embedding_type="rotary"``, ``gated_mlp``,
``n_key_value_heads``). Llama has no other biases: ours are zero.
"""

from __future__ import annotations

from typing import Any

import einops
import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.loading.hf_files import TensorTaker, check_config_fields

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
HUB_NAMES: dict[str, str] = {}
ACTIVATIONS = {"silu": "silu", "gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu"}
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
    activation = hf.get("hidden_act", "silu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{architecture} hidden_act {activation!r} is not supported; supported: {sorted(ACTIVATIONS)}")
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
        act_fn=ACTIVATIONS[activation],
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


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face Llama/Qwen2 tensors -> our state dict. Every source tensor must be used and every shape match."""
    state = {key.removeprefix("model."): value for key, value in hf_state.items() if not key.endswith("rotary_emb.inv_freq")}
    take = TensorTaker(state, cfg.original_architecture or "Llama")
    d_model, d_head, d_mlp = cfg.d_model, cfg.d_head, cfg.d_mlp
    n_heads, n_kv = cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads
    per_head = "(head_index d_head) d_model -> head_index d_model d_head"
    out = {"embed.W_E": take("embed_tokens.weight", (cfg.d_vocab, d_model))}
    for layer in range(cfg.n_layers):
        hf, ours = f"layers.{layer}.", f"blocks.{layer}."
        for proj, heads, letter in (("q_proj", n_heads, "Q"), ("k_proj", n_kv, "K"), ("v_proj", n_kv, "V")):
            weight = take(f"{hf}self_attn.{proj}.weight", (heads * d_head, d_model))
            out[f"{ours}attn.W_{letter}"] = einops.rearrange(weight, per_head, head_index=heads)
            bias_key = f"{hf}self_attn.{proj}.bias"  # Qwen2 and attention_bias=True checkpoints
            bias = take(bias_key, (heads * d_head,)) if bias_key in state else torch.zeros(heads * d_head, dtype=weight.dtype)
            out[f"{ours}attn.b_{letter}"] = bias.reshape(heads, d_head)
        o_proj = take(f"{hf}self_attn.o_proj.weight", (d_model, n_heads * d_head))
        out[f"{ours}attn.W_O"] = einops.rearrange(o_proj, "d_model (head_index d_head) -> head_index d_head d_model", head_index=n_heads)
        o_bias_key = f"{hf}self_attn.o_proj.bias"
        out[f"{ours}attn.b_O"] = take(o_bias_key, (d_model,)) if o_bias_key in state else torch.zeros(d_model, dtype=o_proj.dtype)
        out[f"{ours}ln1.w"] = take(f"{hf}input_layernorm.weight", (d_model,))
        out[f"{ours}ln2.w"] = take(f"{hf}post_attention_layernorm.weight", (d_model,))
        out[f"{ours}mlp.W_gate"] = take(f"{hf}mlp.gate_proj.weight", (d_mlp, d_model)).T
        out[f"{ours}mlp.W_in"] = take(f"{hf}mlp.up_proj.weight", (d_mlp, d_model)).T
        out[f"{ours}mlp.W_out"] = take(f"{hf}mlp.down_proj.weight", (d_model, d_mlp)).T
        out[f"{ours}mlp.b_in"] = torch.zeros(d_mlp, dtype=o_proj.dtype)
        out[f"{ours}mlp.b_out"] = torch.zeros(d_model, dtype=o_proj.dtype)
    out["ln_final.w"] = take("norm.weight", (d_model,))
    # A tied checkpoint may omit lm_head.weight; the unembedding is then the embedding transposed.
    lm_head = take("lm_head.weight", (cfg.d_vocab, d_model)) if "lm_head.weight" in state else out["embed.W_E"]
    out["unembed.W_U"] = lm_head.T
    out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=lm_head.dtype)
    take.check_all_used()
    return {name: tensor.contiguous() for name, tensor in out.items()}
