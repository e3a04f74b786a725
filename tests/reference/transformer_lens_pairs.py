"""The same tiny random Hugging Face checkpoint loaded by our HookedTransformer and by TransformerLens.

Nothing is downloaded: each model is built from a small config with random weights, saved to a
temporary directory, loaded by ``HookedTransformer.from_pretrained`` (weights as stored) and converted
for TransformerLens by its own config and weight conversion code, without weight processing.
Not a conftest.py on purpose: a second conftest module would shadow tests/conftest.py for the
test modules that ``from conftest import`` its helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from interp_transformer import HookedTransformer

D_VOCAB = 300
COMMON_LLAMA = dict(
    hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=D_VOCAB, max_position_embeddings=64, rms_norm_eps=1e-5,
)
# Hugging Face config class, model class, config values. Small but not degenerate: several heads, GQA
# (2 key/value heads for 4 query heads) in the Llama family, a local-attention window shorter than the
# sequence for GPT-Neo, partial rotary for GPT-NeoX (as Pythia).
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # TransformerLens 3.9 reads GPT2Config.n_ctx, which transformers 5 no longer stores unless given.
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_layer=2, n_embd=32, n_head=4, vocab_size=D_VOCAB, n_positions=64, n_ctx=64)),
    "gpt_neo": (
        "GPTNeoConfig", "GPTNeoForCausalLM",
        dict(num_layers=2, hidden_size=32, num_heads=4, vocab_size=D_VOCAB, max_position_embeddings=64,
             attention_types=[[["global", "local"], 1]], window_size=5),
    ),
    "gpt_neox": (
        "GPTNeoXConfig", "GPTNeoXForCausalLM",
        dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=D_VOCAB,
             max_position_embeddings=64, rotary_pct=0.5),
    ),
    "llama": ("LlamaConfig", "LlamaForCausalLM", COMMON_LLAMA),
    # head_dim != hidden_size / num_attention_heads and one key/value head: TL honours head_dim for Mistral only.
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(COMMON_LLAMA, sliding_window=None, head_dim=16, num_key_value_heads=1)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", COMMON_LLAMA),
}


@dataclass
class Pair:
    """The same random checkpoint as a Hugging Face model, our model and a TransformerLens model."""

    hf: Any
    ours: HookedTransformer
    theirs: Any


def save_random_checkpoint(arch: str, directory: Path, jitter: float = 0.1):
    """A random-init HF model of ``arch`` with every parameter perturbed (norm weights and biases are then not
    their trivial 1 and 0, so a hook taken after them cannot pass for one taken before), saved to ``directory``."""
    import transformers

    config_name, model_name, values = ARCHITECTURES[arch]
    config = getattr(transformers, config_name)(**values, initializer_range=0.3, attn_implementation="eager")
    seed = sorted(ARCHITECTURES).index(arch)  # different weights for the architectures that share a layout
    torch.manual_seed(seed)
    hf_model = getattr(transformers, model_name)(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in hf_model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * jitter)
    hf_model.save_pretrained(directory)
    return hf_model


def load_both(transformer_lens, arch: str, directory: Path, optional_hooks: bool) -> Pair:
    """Load ``directory`` in both libraries with no weight processing; ``optional_hooks`` turns on every
    optional hook point both libraries share (attention result, split q/k/v input where not GQA, mlp_in)."""
    from transformer_lens import loading_from_pretrained as tl_loading

    hf_model = save_random_checkpoint(arch, directory)
    ours = HookedTransformer.from_pretrained(directory).eval()
    cfg = tl_loading.get_pretrained_model_config(str(directory), fold_ln=False, device="cpu", dtype=torch.float32)
    cfg.tokenizer_name = None  # the checkpoint has no tokenizer; tokens are passed in directly
    if optional_hooks:
        gqa = ours.cfg.n_key_value_heads not in (None, ours.cfg.n_heads)
        flags = dict(use_attn_result=True, use_hook_mlp_in=True, use_split_qkv_input=not gqa)
        for flag, value in flags.items():
            setattr(cfg, flag, value)
        weights = ours.state_dict()
        ours = HookedTransformer(ours.cfg.replace(**flags)).eval()
        ours.load_state_dict(weights)
    state = tl_loading.get_pretrained_state_dict(str(directory), cfg, hf_model=hf_model)
    theirs = transformer_lens.HookedTransformer(cfg, move_to_device=False)
    theirs.load_and_process_state_dict(
        state, fold_ln=False, center_writing_weights=False, center_unembed=False,
        fold_value_biases=False, refactor_factored_attn_matrices=False,
    )
    return Pair(hf_model, ours, theirs.eval())


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max(1, max |theirs|) over finite entries; inf if the non-finite entries differ
    (masked attention scores are -inf in both libraries, and nan compares as not-greater, so check them apart)."""
    finite = torch.isfinite(theirs)
    if not torch.equal(finite, torch.isfinite(ours)) or not torch.equal(ours[~finite], theirs[~finite]):
        return float("inf")
    if not finite.any():
        return 0.0
    scale = max(1.0, theirs[finite].abs().max().item())
    return (ours[finite] - theirs[finite]).abs().max().item() / scale
