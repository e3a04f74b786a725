"""Every converter against Hugging Face's own forward pass: one parametrised test per architecture and shape.

The checkpoints come from the one factory (tests/hf_checkpoints.py): small random models of each
architecture with every parameter perturbed. Each case checks, against Hugging Face, the logits of the
fused fast path (nothing hooked) and of the explicit path (every hook cached, which switches attention
and the norms off their fused kernels), the residual stream entering every block, the final norm's
output, and every attention pattern.
"""

from __future__ import annotations

import hf_checkpoints
import pytest
import torch
from conftest import sample_tokens

from interp_transformer import HookedTransformer, names


def assert_close_to_hf(actual: torch.Tensor, expected: torch.Tensor, atol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != Hugging Face's {tuple(expected.shape)}"
    error = (actual - expected).abs().max().item()
    assert error <= atol, f"{what}: max-abs difference from Hugging Face is {error:.2e} (> {atol:.0e})"


@pytest.mark.parametrize("arch, shape", hf_checkpoints.parity_cases(), ids=lambda value: value)
def test_converted_model_matches_hugging_face(tmp_path, arch, shape):
    hf_model = hf_checkpoints.save_random_checkpoint(arch, tmp_path / "checkpoint", **hf_checkpoints.PARITY_SHAPES[arch][shape])
    model = HookedTransformer.from_pretrained(tmp_path / "checkpoint").eval()
    what = f"{arch} {shape}"
    tokens = sample_tokens()  # 20 positions: longer than every local-attention window here
    with torch.no_grad():
        hf_out = hf_model(tokens, output_hidden_states=True, output_attentions=True)
        fused_logits = model(tokens)
        explicit_logits, cache = model.run_with_cache(tokens)
    assert hf_out.logits.std() > 0.5, f"{what}: HF logits are nearly constant; the comparison would be vacuous"
    assert fused_logits.dtype == torch.float32
    assert_close_to_hf(fused_logits, hf_out.logits, 1e-4, f"{what}: logits of the fused path")
    assert_close_to_hf(explicit_logits, hf_out.logits, 1e-4, f"{what}: logits with every hook cached (explicit path)")
    assert list(cache) == list(names.hook_shapes(model.cfg)), f"{what}: the cache's hooks are not names.py's table"

    # hidden_states[L] is the stream entering block L; the last one is after the final norm's weight and bias.
    n_layers = model.cfg.n_layers
    for layer in range(n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        assert_close_to_hf(cache[name], hf_out.hidden_states[layer], 1e-4, f"{what}: {name}")
    assert_close_to_hf(cache["unembed.hook_in"], hf_out.hidden_states[n_layers], 1e-4, f"{what}: unembed.hook_in (final norm)")
    for layer in range(n_layers):
        name = f"blocks.{layer}.attn.hook_pattern"
        assert hf_out.attentions[layer].std() > 0.05, f"{what}: attention is nearly uniform; the comparison would be vacuous"
        # Patterns lie in [0, 1]; float32 rounding grows with depth (1.1e-5 at block 3 of GPT-Neo's 4).
        assert_close_to_hf(cache[name], hf_out.attentions[layer], 3e-5, f"{what}: {name}")


def test_every_converted_architecture_has_a_parity_case():
    from interp_transformer.loading import architectures

    converted = {arch for converter in architectures.CONVERTERS for arch in converter.ARCHITECTURES}
    covered = {hf_checkpoints.ARCHITECTURES[arch][1] for arch in hf_checkpoints.PARITY_SHAPES}
    assert converted <= covered, f"architectures with a converter but no Hugging Face parity case: {sorted(converted - covered)}"
