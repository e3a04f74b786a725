"""Path patching against a literal, hook-by-hook implementation of Wang et al.'s three steps, and its sum identities."""

from __future__ import annotations

import pytest
import torch
from patching_helpers import logit_diff, tiny_model, token_pair

from interp_transformer import patching
from interp_transformer.patching import Receiver, Sender


@pytest.fixture(scope="module")
def setup():
    model = tiny_model(n_layers=3)
    clean, corrupted = token_pair(model)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
    return model, clean, corrupted, clean_cache, corrupted_cache


def _literal_path_patch(model, clean, clean_cache, corrupted_cache, sender: Sender, receivers) -> torch.Tensor:
    """Wang et al. step by step: (2) run clean with the sender from corrupted and every other head and MLP
    frozen at its clean value, recording the receivers' inputs; (3) run clean with only those patched."""

    def freeze(activation, hook):
        activation[:] = clean_cache[hook.name]
        if hook.name == sender.hook_name:
            if sender.kind == "head":
                activation[:, :, sender.head] = corrupted_cache[hook.name][:, :, sender.head]
            else:
                activation[:] = corrupted_cache[hook.name]
        return activation

    frozen = lambda name: name.endswith(("hook_z", "hook_mlp_out")) or name == sender.hook_name  # noqa: E731
    recorded = {}

    def record(activation, hook):
        recorded[hook.name] = activation.clone()

    receiver_hooks = [] if receivers == "final_residual" else sorted({f"blocks.{r.layer}.attn.hook_{r.input}" for r in receivers})
    with torch.no_grad():
        step2 = model.run_with_hooks(clean, fwd_hooks=[(frozen, freeze)] + ([(receiver_hooks, record)] if receiver_hooks else []))
        if receivers == "final_residual":
            return logit_diff(step2)

        def patch_receivers(activation, hook):
            for r in receivers:
                if f"blocks.{r.layer}.attn.hook_{r.input}" == hook.name:
                    activation[:, :, r.head] = recorded[hook.name][:, :, r.head]
            return activation

        return logit_diff(model.run_with_hooks(clean, fwd_hooks=[(receiver_hooks, patch_receivers)]))


SENDERS = [
    Sender("embed"),
    Sender("pos_embed"),
    Sender("head", 0, 1),
    Sender("mlp", 0),
    Sender("head", 1, 3),
    Sender("mlp", 1),
    Sender("head", 2, 0),
]
RECEIVER_SETS = {
    "final residual": "final_residual",
    "one head's q": [Receiver(2, 1, "q")],
    "q, k, v across layers": [Receiver(1, 0, "v"), Receiver(2, 3, "k"), Receiver(2, 3, "q"), Receiver(2, 1, "v")],
}


@pytest.mark.parametrize("receivers", list(RECEIVER_SETS))
def test_matches_the_literal_three_step_algorithm(setup, receivers):
    model, clean, corrupted, clean_cache, corrupted_cache = setup
    receivers = RECEIVER_SETS[receivers]
    result = patching.path_patch(model, clean, corrupted, logit_diff, SENDERS, receivers, progress=False)
    expected = torch.stack([_literal_path_patch(model, clean, clean_cache, corrupted_cache, s, receivers) for s in SENDERS])
    assert result.axes == ("sender",) and result.labels["sender"] == [s.label for s in SENDERS]
    torch.testing.assert_close(result.values, expected, rtol=0, atol=1e-5)


def test_all_senders_to_the_final_residual_equal_patching_their_sum(setup):
    """The final residual stream is the sum of every component's output (plus biases, equal in both runs)."""
    model, clean, corrupted, _clean_cache, corrupted_cache = setup
    everything = tuple(patching.every_component(model))
    (joint,) = patching.path_patch(model, clean, corrupted, logit_diff, [everything], progress=False).values
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    (activation,) = patching.patch_locations(
        model, clean, corrupted_cache, logit_diff, [patching.PatchLocation((patching.Patch(last),))], progress=False
    )
    torch.testing.assert_close(joint, activation, rtol=0, atol=1e-5)
    torch.testing.assert_close(joint, logit_diff(model(corrupted)), rtol=0, atol=1e-5)


def test_all_earlier_senders_to_a_head_equal_patching_its_inputs(setup):
    """A layer-2 head's q/k/v inputs read the residual stream entering layer 2: the sum of every earlier component."""
    model, clean, corrupted, _clean_cache, corrupted_cache = setup
    earlier = tuple(s for s in patching.every_component(model) if s.layer < 2)
    receivers = [Receiver(2, 1, "q"), Receiver(2, 1, "k"), Receiver(2, 1, "v")]
    (joint,) = patching.path_patch(model, clean, corrupted, logit_diff, [earlier], receivers, progress=False).values
    location = patching.PatchLocation(tuple(patching.Patch(f"blocks.2.attn.hook_{x}", (slice(None), 1)) for x in "qkv"))
    (activation,) = patching.patch_locations(model, clean, corrupted_cache, logit_diff, [location], progress=False)
    torch.testing.assert_close(joint, activation, rtol=0, atol=1e-5)


def test_senders_without_a_path_leave_the_metric_unchanged(setup):
    model, clean, corrupted, *_ = setup
    heads = patching.path_patch_heads(model, clean, corrupted, logit_diff, [Receiver(1, 2, "v")], progress=False)
    assert tuple(heads.shape) == (3, 4) and heads.axes == ("layer", "head_index")
    baseline = logit_diff(model(clean))
    torch.testing.assert_close(heads.values[1:], baseline.expand(2, 4), rtol=0, atol=1e-6)
    assert (heads.values[0] - baseline).abs().max() > 1e-4, "layer-0 heads do reach a layer-1 receiver"


def test_batched_and_looped_path_patching_agree_exactly(setup):
    model, clean, corrupted, *_ = setup
    receivers = RECEIVER_SETS["q, k, v across layers"]
    batched = patching.path_patch_heads(model, clean, corrupted, logit_diff, receivers, progress=False)
    looped = patching.path_patch_heads(
        model, clean, corrupted, logit_diff, receivers, progress=False, max_locations_per_forward=1
    )
    assert torch.equal(batched.values, looped.values)


def test_shortformer_attention_only_model_matches_the_literal_algorithm():
    """Shortformer positions reach only queries and keys: the receiver's q and k get them added after ln1."""
    model = tiny_model(n_layers=3, attn_only=True, positional_embedding_type="shortformer")
    clean, corrupted = token_pair(model)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
    senders = [Sender("embed"), Sender("head", 0, 2), Sender("head", 1, 0)]
    receivers = [Receiver(2, 0, "q"), Receiver(2, 0, "k"), Receiver(2, 3, "v")]
    result = patching.path_patch(model, clean, corrupted, logit_diff, senders, receivers, progress=False)
    expected = torch.stack([_literal_path_patch(model, clean, clean_cache, corrupted_cache, s, receivers) for s in senders])
    torch.testing.assert_close(result.values, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="shortformer"):
        patching.path_patch(model, clean, corrupted, logit_diff, [Sender("pos_embed")])
