"""The one factory of tiny random Hugging Face checkpoints, for every architecture the loaders convert.

Used by the parity tests (tests/loading/test_hf_parity.py), by the per-architecture loading tests
(through conftest's ``save_random_hf_model`` / ``make_hf_gpt2``) and by the TransformerLens reference
suite (tests/reference/transformer_lens_pairs.py). Nothing is downloaded: each model is built from a
small config, every parameter is perturbed (so norm weights and biases are not their trivial 1 and 0
and a swapped, transposed or dropped tensor shows up), and it is saved to a directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

D_VOCAB = 300
_LLAMA = dict(
    hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=D_VOCAB, max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)
# Architecture -> (Hugging Face config class, model class, base config). Small but not degenerate: several
# heads; grouped-query attention in the Llama family; a local window shorter than the sequence for GPT-Neo;
# partial rotary for GPT-NeoX (as Pythia).
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # TransformerLens 3.9 reads GPT2Config.n_ctx, which transformers 5 no longer stores unless given.
    "gpt2": (
        "GPT2Config", "GPT2LMHeadModel",
        dict(n_layer=2, n_embd=32, n_head=4, vocab_size=D_VOCAB, n_positions=64, n_ctx=64, bos_token_id=0, eos_token_id=0),
    ),
    "gpt_neo": (
        "GPTNeoConfig", "GPTNeoForCausalLM",
        dict(hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, vocab_size=D_VOCAB, max_position_embeddings=64,
             attention_types=[[["global", "local"], 1]], window_size=5, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    ),
    "gpt_neox": (
        "GPTNeoXConfig", "GPTNeoXForCausalLM",
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, vocab_size=D_VOCAB,
             max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    ),
    "llama": ("LlamaConfig", "LlamaForCausalLM", _LLAMA),
    # head_dim != hidden_size / num_attention_heads and one key/value head.
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_LLAMA, sliding_window=None, head_dim=16, num_key_value_heads=1)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", _LLAMA),
}

# Architecture -> shape name -> config overrides: the variants each converter must get right.
PARITY_SHAPES: dict[str, dict[str, dict[str, Any]]] = {
    "gpt2": {
        "default-gelu_new-tied": dict(),
        "3-layers-gelu-n_inner-untied": dict(n_layer=3, n_embd=48, n_head=6, n_inner=40, activation_function="gelu", tie_word_embeddings=False),
        "1-layer-relu-unscaled-attention": dict(n_layer=1, n_embd=16, n_head=2, activation_function="relu", scale_attn_weights=False),
        "wide-heads-eps": dict(n_layer=2, n_embd=24, n_head=2, n_inner=72, layer_norm_epsilon=1e-3, tie_word_embeddings=False),
    },
    "gpt_neo": {
        "global-local-window5": dict(),
        "local-only-window1": dict(attention_types=[[["local"], 2]], window_size=1),
        "local-global-x2-untied-relu": dict(
            num_layers=4, attention_types=[[["local", "global"], 2]], window_size=3, tie_word_embeddings=False,
            activation_function="relu", intermediate_size=None,
        ),
    },
    "gpt_neox": {
        "parallel-quarter-rotary": dict(),  # Pythia's defaults: use_parallel_residual, rotary_pct 0.25
        "sequential-half-rotary": dict(use_parallel_residual=False, rotary_pct=0.5),
        "parallel-full-rotary-theta-no-bias": dict(rotary_pct=1.0, rotary_emb_base=500.0, attention_bias=False, num_hidden_layers=3),
        "tied-relu": dict(tie_word_embeddings=True, hidden_act="relu", num_attention_heads=2),
    },
    "llama": {
        "gqa": dict(),
        "mha-tied-theta": dict(num_key_value_heads=4, tie_word_embeddings=True, rope_theta=500.0),
        "head_dim-mismatch": dict(head_dim=16, num_key_value_heads=1),
    },
    "mistral": {"one-kv-head-wide-heads": dict()},
    "qwen2": {"biases": dict()},
}


def hf_classes(arch: str) -> tuple[type, type]:
    """(config class, model class) of ``arch``, imported from transformers on use (it is slow to import)."""
    import transformers

    config_name, model_name, _ = ARCHITECTURES[arch]
    return getattr(transformers, config_name), getattr(transformers, model_name)


def save_hf_model(model_cls, config, directory: Path, seed: int = 0, jitter: float = 0.1):
    """``model_cls(config)`` seeded with ``seed``, every parameter plus ``jitter`` x N(0, 1) noise, saved to ``directory``."""
    torch.manual_seed(seed)
    hf_model = model_cls(config).eval()
    if jitter:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for param in hf_model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * jitter)
    hf_model.save_pretrained(directory)
    return hf_model


def save_random_checkpoint(arch: str, directory: Path, seed: int = 0, jitter: float = 0.1, **overrides):
    """A random ``arch`` model (base config | ``overrides``, large initializer range, eager attention so HF
    returns attention patterns) with every parameter perturbed, saved to ``directory``; returns the HF model."""
    config_cls, model_cls = hf_classes(arch)
    values = dict(ARCHITECTURES[arch][2], initializer_range=0.3, attn_implementation="eager") | overrides
    return save_hf_model(model_cls, config_cls(**values), directory, seed, jitter)


def parity_cases() -> list[tuple[str, str]]:
    """Every (architecture, shape) pair of PARITY_SHAPES."""
    return [(arch, shape) for arch in sorted(PARITY_SHAPES) for shape in sorted(PARITY_SHAPES[arch])]
