"""Every hook of our HookedTransformer against TransformerLens 3.x on the same random weights.

These tests need TransformerLens 3.x and are NOT part of the default run (setup.cfg's addopts
deselect the ``reference`` marker). Run them, in an environment with ``transformer-lens``
installed next to this package (e.g. a separate venv: ``pip install transformer-lens==3.9.0``,
then ``pip install -e .``), with

    python -m pytest -m reference tests/reference

Hook values are compared to 1e-4 relative to max(1, the activation's largest
magnitude); a hook present in one library only must be listed below with the reason.
"""

from __future__ import annotations

import os
import re

import pytest
import torch
from transformer_lens_pairs import ARCHITECTURES, D_VOCAB, load_both, relative_difference

pytestmark = [
    pytest.mark.reference,
    # TransformerLens 3.x deprecates HookedTransformer in favour of TransformerBridge; the class is what we mirror.
    pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning"),
]

TOLERANCE = 1e-4
# Hooks only TransformerLens has, by family ("blocks.*." stands for every layer), with the reason.
ONLY_TRANSFORMER_LENS: dict[str, str] = {}
ONLY_OURS: dict[str, str] = {}


@pytest.fixture(scope="session")
def transformer_lens():
    """TransformerLens, imported only when a reference test runs (the default run deselects them before)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network; fail rather than fetch
    return pytest.importorskip("transformer_lens")


def hook_family(name: str) -> str:
    return re.sub(r"^blocks\.\d+\.", "blocks.*.", name)


def sample_tokens(batch: int = 3, pos: int = 14) -> torch.Tensor:
    return torch.randint(0, D_VOCAB, (batch, pos), generator=torch.Generator().manual_seed(2))


def run_both(pair, tokens):
    with torch.no_grad():
        our_logits, ours = pair.ours.run_with_cache(tokens)
        their_logits, theirs = pair.theirs.run_with_cache(tokens)
        hf_logits = pair.hf(tokens).logits
    return (our_logits, dict(ours.items())), (their_logits, dict(theirs.cache_dict)), hf_logits


@pytest.mark.parametrize("optional_hooks", [False, True], ids=["default-hooks", "optional-hooks"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_shared_hook_equals_transformer_lens(transformer_lens, tmp_path_factory, arch, optional_hooks):
    # tmp_path_factory, not tmp_path: TL's config conversion picks an architecture from the path's name
    # when it contains "llama" or "gemma", and tmp_path contains the test's parameters.
    pair = load_both(transformer_lens, arch, tmp_path_factory.mktemp("checkpoint"), optional_hooks)
    (our_logits, ours), (their_logits, theirs), hf_logits = run_both(pair, sample_tokens())
    assert (their_logits - hf_logits).abs().max() < 1e-4, f"{arch}: TransformerLens's own conversion differs from HF"
    assert relative_difference(our_logits, their_logits) < TOLERANCE, f"{arch}: logits differ from TransformerLens"

    shared = [name for name in ours if name in theirs]
    assert len(shared) > 20, f"{arch}: only {len(shared)} shared hooks; are the caches keyed differently?"
    wrong = {}
    for name in shared:
        if ours[name].shape != theirs[name].shape:
            wrong[name] = f"shape {tuple(ours[name].shape)} vs TL {tuple(theirs[name].shape)}"
        elif (difference := relative_difference(ours[name], theirs[name])) > TOLERANCE:
            wrong[name] = f"relative difference {difference:.2e}"
    assert not wrong, f"{arch}: hooks that differ from TransformerLens 3.x: {wrong}"

    only_theirs = {hook_family(name) for name in theirs if name not in ours}
    only_ours = {hook_family(name) for name in ours if name not in theirs}
    assert only_theirs == set(ONLY_TRANSFORMER_LENS), (
        f"{arch}: hooks only TransformerLens has changed: {sorted(only_theirs)}; list each with its reason"
    )
    assert only_ours == set(ONLY_OURS), f"{arch}: hooks only we have changed: {sorted(only_ours)}; list each with its reason"


@pytest.mark.parametrize("arch", ["gpt2", "llama"])  # one LayerNorm and one RMSNorm model
def test_hook_normalized_is_taken_before_the_norm_weights(transformer_lens, tmp_path_factory, arch):
    pair = load_both(transformer_lens, arch, tmp_path_factory.mktemp("checkpoint"), optional_hooks=False)
    (_, ours), (_, theirs), _ = run_both(pair, sample_tokens())
    for module in ("blocks.0.ln1", "blocks.1.ln2", "ln_final"):
        name = f"{module}.hook_normalized"
        norm = pair.ours.get_submodule(module)
        after_weights = ours[name] * norm.w + (norm.b if hasattr(norm, "b") else 0)
        assert (after_weights - ours[name]).abs().max() > 0.1, f"{module}'s weights are near identity: vacuous check"
        assert relative_difference(ours[name], theirs[name]) < TOLERANCE, (
            f"{name} differs from TransformerLens 3.x: is it taken after the weight and bias (TL 2.x) again?"
        )
