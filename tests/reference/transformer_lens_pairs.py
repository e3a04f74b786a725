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

import hf_checkpoints
import torch
from hf_checkpoints import D_VOCAB

from interp_transformer import HookedTransformer

# The checkpoints come from the one factory, tests/hf_checkpoints.py, with these overrides: GPT-NeoX with half
# its head width rotary, and GPT-Neo with HF's default MLP width (TransformerLens 3.9 ignores GPT-Neo's
# intermediate_size and assumes 4 * hidden_size).
REFERENCE_OVERRIDES: dict[str, dict[str, Any]] = {
    "gpt_neox": dict(intermediate_size=64, rotary_pct=0.5),
    "gpt_neo": dict(intermediate_size=None),
}
ARCHITECTURES = hf_checkpoints.ARCHITECTURES


@dataclass
class Pair:
    """The same random checkpoint as a Hugging Face model, our model and a TransformerLens model."""

    hf: Any
    ours: HookedTransformer
    theirs: Any


def save_random_checkpoint(arch: str, directory: Path, jitter: float = 0.1):
    """The factory's random ``arch`` checkpoint (every parameter perturbed), seeded per architecture."""
    seed = sorted(ARCHITECTURES).index(arch)  # different weights for the architectures that share a layout
    return hf_checkpoints.save_random_checkpoint(arch, directory, seed=seed, jitter=jitter, **REFERENCE_OVERRIDES.get(arch, {}))


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
