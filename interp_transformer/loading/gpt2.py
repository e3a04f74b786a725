"""Converter for the GPT-2 family (GPT2LMHeadModel): gpt2, gpt2-medium/large/xl, distilgpt2.

Hugging Face stores GPT-2's projections as ``Conv1D`` weights ``[in out]`` with q, k and v
fused along ``out``; we split them per head into ``[head_index d_model d_head]``.
"""

from __future__ import annotations

from typing import Any

import einops
import torch
from torch import Tensor

from interp_transformer.config import TransformerConfig
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
ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "gelu_fast": "gelu_fast", "relu": "relu", "silu": "silu", "swish": "silu"}
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
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(f"GPT-2 activation_function {activation!r} is not supported; supported: {sorted(ACTIVATIONS)}")
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
        act_fn=ACTIVATIONS[activation],
        attn_scale=(d_model // n_heads) ** 0.5 if hf.get("scale_attn_weights", True) else 1.0,
        model_name=name,
        original_architecture="GPT2LMHeadModel",
    )


def _refuse(hf: dict[str, Any], key: str, supported: Any, why: str) -> None:
    if hf.get(key, supported) != supported:
        raise ValueError(f"GPT-2 config {key}={hf[key]!r} is not supported ({why}); only {supported!r} is")


def convert_weights(hf_state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Hugging Face GPT-2 tensors -> our state dict. Every source tensor must be used and every shape match."""
    state = {_strip_prefix(k): v for k, v in hf_state.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    take = TensorTaker(state, "GPT-2")
    out = {"embed.W_E": take("wte.weight", (cfg.d_vocab, cfg.d_model)), "pos_embed.W_pos": take("wpe.weight", (cfg.n_ctx, cfg.d_model))}
    qkv = "d_model (qkv head_index d_head) -> qkv head_index d_model d_head"
    for layer in range(cfg.n_layers):
        hf, ours = f"h.{layer}.", f"blocks.{layer}."
        w_qkv = take(hf + "attn.c_attn.weight", (cfg.d_model, 3 * cfg.d_model))
        b_qkv = take(hf + "attn.c_attn.bias", (3 * cfg.d_model,))
        W_Q, W_K, W_V = einops.rearrange(w_qkv, qkv, qkv=3, head_index=cfg.n_heads)
        b_Q, b_K, b_V = einops.rearrange(b_qkv, "(qkv head_index d_head) -> qkv head_index d_head", qkv=3, head_index=cfg.n_heads)
        out |= {
            ours + "ln1.w": take(hf + "ln_1.weight", (cfg.d_model,)),
            ours + "ln1.b": take(hf + "ln_1.bias", (cfg.d_model,)),
            ours + "attn.W_Q": W_Q, ours + "attn.W_K": W_K, ours + "attn.W_V": W_V,
            ours + "attn.b_Q": b_Q, ours + "attn.b_K": b_K, ours + "attn.b_V": b_V,
            ours + "attn.W_O": einops.rearrange(
                take(hf + "attn.c_proj.weight", (cfg.d_model, cfg.d_model)),
                "(head_index d_head) d_model -> head_index d_head d_model", head_index=cfg.n_heads,
            ),
            ours + "attn.b_O": take(hf + "attn.c_proj.bias", (cfg.d_model,)),
            ours + "ln2.w": take(hf + "ln_2.weight", (cfg.d_model,)),
            ours + "ln2.b": take(hf + "ln_2.bias", (cfg.d_model,)),
            ours + "mlp.W_in": take(hf + "mlp.c_fc.weight", (cfg.d_model, cfg.d_mlp)),
            ours + "mlp.b_in": take(hf + "mlp.c_fc.bias", (cfg.d_mlp,)),
            ours + "mlp.W_out": take(hf + "mlp.c_proj.weight", (cfg.d_mlp, cfg.d_model)),
            ours + "mlp.b_out": take(hf + "mlp.c_proj.bias", (cfg.d_model,)),
        }
    out["ln_final.w"] = take("ln_f.weight", (cfg.d_model,))
    out["ln_final.b"] = take("ln_f.bias", (cfg.d_model,))
    # A tied checkpoint may omit lm_head.weight; the unembedding is then the embedding transposed.
    lm_head = take("lm_head.weight", (cfg.d_vocab, cfg.d_model)) if "lm_head.weight" in state else out["embed.W_E"]
    out["unembed.W_U"] = lm_head.T
    out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=lm_head.dtype)
    take.check_all_used()
    return {name: tensor.contiguous() for name, tensor in out.items()}


def _strip_prefix(key: str) -> str:
    return key.removeprefix("transformer.")
