"""Converter for GPT-NeoX and Pythia (GPTNeoXForCausalLM).

Rotary embeddings on the first ``rotary_pct`` of each head (``positional_embedding_type="rotary"``
with ``rotary_dim < d_head``), attention and MLP side by side when ``use_parallel_residual``
(``parallel_attn_mlp``), and an unembedding not tied to the embedding. Hugging Face stores each
projection as an ``nn.Linear`` weight ``[out in]``; we transpose and split ``out`` per head.
"""

from __future__ import annotations

from typing import Any

import einops
import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
from interp_transformer.loading.hf_files import TensorTaker, check_config_fields

ARCHITECTURES = ("GPTNeoXForCausalLM",)
HUB_NAMES = {
    f"pythia-{size}{suffix}": f"EleutherAI/pythia-{size}{suffix}"
    for size in ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")
    for suffix in ("", "-deduped")
    if not (suffix and size in ("14m", "31m"))  # the two smallest have no deduped twin
} | {"gpt-neox-20b": "EleutherAI/gpt-neox-20b"}
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_fast": "gelu_fast", "relu": "relu", "silu": "silu"}
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
    activation = hf.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"GPT-NeoX hidden_act {activation!r} is not supported; supported: {sorted(ACTIVATIONS)}")
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
        act_fn=ACTIVATIONS[activation],
        positional_embedding_type="rotary",
        rotary_dim=rotary_dim,
        rotary_base=float(rope.get("rope_theta", hf.get("rotary_emb_base", 10000.0))),
        parallel_attn_mlp=hf.get("use_parallel_residual", True),
        model_name=name,
        original_architecture="GPTNeoXForCausalLM",
    )


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face GPT-NeoX tensors -> our state dict. Every source tensor must be used and every shape match."""
    skipped = ("rotary_emb.inv_freq", "attention.bias", "attention.masked_bias")  # buffers in older checkpoints
    state = {key.removeprefix("gpt_neox."): value for key, value in hf_state.items() if not key.endswith(skipped)}
    take = TensorTaker(state, "GPT-NeoX")
    d_model, d_mlp, n_heads = cfg.d_model, cfg.d_mlp, cfg.n_heads
    out = {"embed.W_E": take("embed_in.weight", (cfg.d_vocab, d_model))}
    for layer in range(cfg.n_layers):
        hf, ours = f"layers.{layer}.", f"blocks.{layer}."
        # query_key_value's output axis is laid out per head, [head_index, qkv, d_head] (q, k, v of head 0, then
        # of head 1 …), not GPT-2's [qkv, head_index, d_head]: HF views it as (heads, 3 * d_head) and chunks.
        w_qkv = take(f"{hf}attention.query_key_value.weight", (3 * d_model, d_model))
        W_Q, W_K, W_V = einops.rearrange(
            w_qkv, "(head_index qkv d_head) d_model -> qkv head_index d_model d_head", head_index=n_heads, qkv=3
        )
        b_key = f"{hf}attention.query_key_value.bias"  # absent when attention_bias=False
        b_qkv = take(b_key, (3 * d_model,)) if b_key in state else torch.zeros(3 * d_model, dtype=w_qkv.dtype)
        b_Q, b_K, b_V = einops.rearrange(b_qkv, "(head_index qkv d_head) -> qkv head_index d_head", head_index=n_heads, qkv=3)
        dense = take(f"{hf}attention.dense.weight", (d_model, d_model))
        dense_b_key = f"{hf}attention.dense.bias"
        out |= {
            ours + "ln1.w": take(f"{hf}input_layernorm.weight", (d_model,)),
            ours + "ln1.b": take(f"{hf}input_layernorm.bias", (d_model,)),
            ours + "attn.W_Q": W_Q, ours + "attn.W_K": W_K, ours + "attn.W_V": W_V,
            ours + "attn.b_Q": b_Q, ours + "attn.b_K": b_K, ours + "attn.b_V": b_V,
            ours + "attn.W_O": einops.rearrange(dense, "d_model (head_index d_head) -> head_index d_head d_model", head_index=n_heads),
            ours + "attn.b_O": take(dense_b_key, (d_model,)) if dense_b_key in state else torch.zeros(d_model, dtype=dense.dtype),
            ours + "ln2.w": take(f"{hf}post_attention_layernorm.weight", (d_model,)),
            ours + "ln2.b": take(f"{hf}post_attention_layernorm.bias", (d_model,)),
            ours + "mlp.W_in": take(f"{hf}mlp.dense_h_to_4h.weight", (d_mlp, d_model)).T,
            ours + "mlp.b_in": take(f"{hf}mlp.dense_h_to_4h.bias", (d_mlp,)),
            ours + "mlp.W_out": take(f"{hf}mlp.dense_4h_to_h.weight", (d_model, d_mlp)).T,
            ours + "mlp.b_out": take(f"{hf}mlp.dense_4h_to_h.bias", (d_model,)),
        }
    out["ln_final.w"] = take("final_layer_norm.weight", (d_model,))
    out["ln_final.b"] = take("final_layer_norm.bias", (d_model,))
    # Pythia's unembedding is its own matrix; a tied checkpoint may omit it, then it is the embedding.
    embed_out = take("embed_out.weight", (cfg.d_vocab, d_model)) if "embed_out.weight" in state else out["embed.W_E"]
    out["unembed.W_U"] = embed_out.T
    out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=embed_out.dtype)
    take.check_all_used()
    return {name: tensor.contiguous() for name, tensor in out.items()}
