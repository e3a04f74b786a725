"""Converter for GPT-Neo (GPTNeoForCausalLM): gpt-neo-125M, 1.3B, 2.7B.

GPT-2's layout with three differences: layers alternate global and local (sliding-window)
attention (``attn_types``, ``window_size``), attention scores are not scaled by
``1/sqrt(d_head)`` (``attn_scale=1``), and q, k, v have no biases (ours are zero). Projections are
``nn.Linear`` weights ``[out in]``, transposed and split per head here.
"""

from __future__ import annotations

from typing import Any

import einops
import torch
from torch import Tensor

from interp_transformer.config import ATTN_TYPES, TransformerConfig
from interp_transformer.loading.hf_files import TensorTaker, check_config_fields

ARCHITECTURES = ("GPTNeoForCausalLM",)
HUB_NAMES = {f"gpt-neo-{size}": f"EleutherAI/gpt-neo-{size}" for size in ("125M", "1.3B", "2.7B")}
ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "gelu_fast": "gelu_fast", "relu": "relu", "silu": "silu"}
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
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(f"GPT-Neo activation_function {activation!r} is not supported; supported: {sorted(ACTIVATIONS)}")
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
        act_fn=ACTIVATIONS[activation],
        attn_scale=1.0,  # GPT-Neo was trained without the 1/sqrt(d_head) score scaling
        attn_types=tuple(attn_types),
        window_size=hf.get("window_size", 256),
        model_name=name,
        original_architecture="GPTNeoForCausalLM",
    )


def _expand_attention_types(attention_types: list) -> list[str]:
    """``[[["global", "local"], 12]]`` -> ``["global", "local"] * 12``, as Hugging Face expands it."""
    return [kind for pattern, repeats in attention_types for _ in range(repeats) for kind in pattern]


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face GPT-Neo tensors -> our state dict. Every source tensor must be used and every shape match."""
    skipped = (".attn.attention.bias", ".attn.attention.masked_bias")  # mask buffers in older checkpoints
    state = {key.removeprefix("transformer."): value for key, value in hf_state.items() if not key.endswith(skipped)}
    take = TensorTaker(state, "GPT-Neo")
    d_model, d_mlp, n_heads, d_head = cfg.d_model, cfg.d_mlp, cfg.n_heads, cfg.d_head
    per_head = "(head_index d_head) d_model -> head_index d_model d_head"
    out = {"embed.W_E": take("wte.weight", (cfg.d_vocab, d_model)), "pos_embed.W_pos": take("wpe.weight", (cfg.n_ctx, d_model))}
    for layer in range(cfg.n_layers):
        hf, ours = f"h.{layer}.", f"blocks.{layer}."
        for proj, letter in (("q_proj", "Q"), ("k_proj", "K"), ("v_proj", "V")):
            weight = take(f"{hf}attn.attention.{proj}.weight", (d_model, d_model))
            out[f"{ours}attn.W_{letter}"] = einops.rearrange(weight, per_head, head_index=n_heads)
            out[f"{ours}attn.b_{letter}"] = torch.zeros(n_heads, d_head, dtype=weight.dtype)
        out_proj = take(f"{hf}attn.attention.out_proj.weight", (d_model, d_model))
        out |= {
            ours + "ln1.w": take(f"{hf}ln_1.weight", (d_model,)),
            ours + "ln1.b": take(f"{hf}ln_1.bias", (d_model,)),
            ours + "attn.W_O": einops.rearrange(out_proj, "d_model (head_index d_head) -> head_index d_head d_model", head_index=n_heads),
            ours + "attn.b_O": take(f"{hf}attn.attention.out_proj.bias", (d_model,)),
            ours + "ln2.w": take(f"{hf}ln_2.weight", (d_model,)),
            ours + "ln2.b": take(f"{hf}ln_2.bias", (d_model,)),
            ours + "mlp.W_in": take(f"{hf}mlp.c_fc.weight", (d_mlp, d_model)).T,
            ours + "mlp.b_in": take(f"{hf}mlp.c_fc.bias", (d_mlp,)),
            ours + "mlp.W_out": take(f"{hf}mlp.c_proj.weight", (d_model, d_mlp)).T,
            ours + "mlp.b_out": take(f"{hf}mlp.c_proj.bias", (d_model,)),
        }
    out["ln_final.w"] = take("ln_f.weight", (d_model,))
    out["ln_final.b"] = take("ln_f.bias", (d_model,))
    # A tied checkpoint may omit lm_head.weight; the unembedding is then the embedding transposed.
    lm_head = take("lm_head.weight", (cfg.d_vocab, d_model)) if "lm_head.weight" in state else out["embed.W_E"]
    out["unembed.W_U"] = lm_head.T
    out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=lm_head.dtype)
    take.check_all_used()
    return {name: tensor.contiguous() for name, tensor in out.items()}
