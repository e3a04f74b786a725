"""run_with_cache: what it captures (and only that), filters, device/batch/position handling, gradients, errors."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer, names
from interp_transformer.activation_cache import ActivationCache


def _record_everything(model: HookedTransformer, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Independent capture: a plain forward hook that clones every activation."""
    seen: dict[str, torch.Tensor] = {}

    def record(activation, hook):
        seen[hook.name] = activation.detach().clone()

    model.run_with_hooks(*args, fwd_hooks=[(lambda name: True, record)], **kwargs)
    return seen


def test_full_cache_holds_every_hook_in_forward_order_with_the_values_a_plain_hook_sees(model, tokens):
    expected = _record_everything(model, tokens)
    logits, cache = model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    assert list(cache) == list(names.hook_shapes(model.cfg)), "a full cache should hold every hook name, in forward order"
    for name, value in expected.items():
        # The full cache hooks every LayerNorm scale, so LayerNorms take the written-out path: allow float noise.
        torch.testing.assert_close(cache[name], value, rtol=1e-5, atol=1e-6, msg=f"{name} differs from what a plain hook saw")
        assert not cache[name].requires_grad, f"{name} should be detached"
    torch.testing.assert_close(logits, model(tokens), rtol=1e-5, atol=1e-5, msg="caching must not change the output")


@pytest.mark.parametrize(
    "names_filter, expected",
    [
        ("blocks.1.attn.hook_pattern", ["blocks.1.attn.hook_pattern"]),
        (["blocks.1.hook_resid_post", "hook_embed"], ["hook_embed", "blocks.1.hook_resid_post"]),
        (lambda name: name.endswith("hook_z"), ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]),
    ],
    ids=["exact name", "list (stored in forward order)", "predicate"],
)
def test_only_filtered_hook_points_are_hooked_and_stored(model, tokens, names_filter, expected):
    hooked_during_forward: set[str] = set()

    def spy(activation, hook):  # runs inside the forward: which points carry hooks right now?
        hooked_during_forward.update(name for name, point in model.hook_dict.items() if point.has_hooks())

    model.add_hook("blocks.1.hook_resid_pre", spy)
    try:
        _, cache = model.run_with_cache(tokens, names_filter=names_filter)
    finally:
        model.reset_hooks()
    assert list(cache) == expected
    assert hooked_during_forward == set(expected) | {"blocks.1.hook_resid_pre"}, (
        f"run_with_cache hooked {sorted(hooked_during_forward - set(expected))} too: it should only hook what it keeps"
    )
    assert not any(point.has_hooks() for point in model.hook_dict.values()), "caching hooks must be removed afterwards"


def test_filter_errors(model, tokens):
    with pytest.raises(KeyError, match=r"closest valid names: \['blocks.0.attn.hook_pattern'"):
        model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_patern")
    with pytest.raises(KeyError, match="hook_resid_pree"):
        model.run_with_cache(tokens, names_filter=["hook_embed", "blocks.0.hook_resid_pree"])
    with pytest.raises(ValueError, match="matches none of the model's"):
        model.run_with_cache(tokens, names_filter=lambda name: "nonexistent" in name)
    with pytest.raises(ValueError, match="matches none"):
        model.run_with_cache(tokens, names_filter=[])
    with pytest.raises(TypeError, match="must be strings"):
        model.run_with_cache(tokens, names_filter=["hook_embed", 3])
    assert not any(point.has_hooks() for point in model.hook_dict.values())


def test_hooks_are_removed_when_the_forward_fails_and_existing_hooks_survive(model, tokens):
    model.add_hook("hook_embed", lambda activation, hook: None)
    with pytest.raises(ValueError, match="out of range"):
        model.run_with_cache(tokens + model.cfg.d_vocab)
    attached = {name: len(point._fwd) for name, point in model.hook_dict.items() if point.has_hooks()}
    model.reset_hooks()
    assert attached == {"hook_embed": 1}, f"after a failed run the hooks left are {attached}; only the user's hook should remain"


def test_device_moves_each_activation_as_it_is_captured(shared_tiny_model, tokens):
    model = shared_tiny_model  # only read: built once per session
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post", "blocks.0.attn.hook_q"], device="meta")
    assert {value.device.type for value in cache.values()} == {"meta"}
    assert cache["blocks.0.attn.hook_q"].shape == (3, 12, 4, 8)


def test_remove_batch_dim(model, tokens):
    _, full = model.run_with_cache(tokens[:1])
    _, cache = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    assert not cache.has_batch_dim
    for name in full:
        torch.testing.assert_close(cache[name], full[name][0], msg=f"{name} with the batch axis removed")
    with pytest.raises(ValueError, match="needs a batch of one.*batch size 3"):
        model.run_with_cache(tokens, remove_batch_dim=True)


@pytest.mark.parametrize("pos_slice", [-1, (2, 7), [0, 5, 11], slice(None, None, 3)], ids=["int", "tuple", "list", "slice"])
def test_pos_slice_keeps_the_same_positions_on_every_kind_of_activation(shared_tiny_model, tokens, pos_slice):
    model = shared_tiny_model  # only read: built once per session
    _, full = model.run_with_cache(tokens)
    _, cache = model.run_with_cache(tokens, pos_slice=pos_slice)
    index = torch.tensor(pos_slice) if isinstance(pos_slice, list) else pos_slice
    index = slice(*index) if isinstance(index, tuple) else index
    cases = {  # name -> the full activation indexed by hand on its position axis
        "blocks.1.hook_resid_pre": full["blocks.1.hook_resid_pre"][:, index],
        "blocks.1.ln2.hook_scale": full["blocks.1.ln2.hook_scale"][:, index],
        "blocks.0.attn.hook_q": full["blocks.0.attn.hook_q"][:, index],  # [batch pos head d_head]: pos is third from last
        "blocks.0.attn.hook_pattern": full["blocks.0.attn.hook_pattern"][:, :, index],  # query positions
        "blocks.0.mlp.hook_post": full["blocks.0.mlp.hook_post"][:, index],
    }
    for name, expected in cases.items():
        torch.testing.assert_close(cache[name], expected, msg=f"{name} with pos_slice={pos_slice!r}")
        assert cache[name].untyped_storage().nbytes() == expected.numel() * expected.element_size(), (
            f"{name}: a position slice should be copied out, not kept as a view of every position"
        )


def test_pos_slice_cuts_the_position_axis_of_rotary_and_split_qkv_hooks(cfg, tokens):
    # hook_rot_q/k are [batch pos head_index d_head] and, with use_split_qkv_input, ln1's hooks gain a head
    # axis: [batch pos head_index 1|d_model]. A hand-kept list of head-axis hooks once sliced their head axis.
    model = HookedTransformer(cfg.replace(positional_embedding_type="rotary", use_split_qkv_input=True)).eval()
    _, full = model.run_with_cache(tokens)
    _, cache = model.run_with_cache(tokens, pos_slice=[1, 4])
    index = torch.tensor([1, 4])
    for name in ("blocks.0.attn.hook_rot_q", "blocks.1.attn.hook_rot_k", "blocks.0.ln1.hook_scale",
                 "blocks.1.ln1.hook_normalized", "blocks.0.hook_q_input", "blocks.0.ln2.hook_scale"):
        torch.testing.assert_close(
            cache[name], full[name][:, index], msg=f"{name}: pos_slice cut an axis other than the position axis"
        )


def test_position_axis_reads_the_hook_table(cfg):
    from interp_transformer.activation_cache import position_axis

    split = cfg.replace(use_split_qkv_input=True)
    assert position_axis("blocks.3.attn.hook_rot_k") == -3, "[batch pos head_index d_head]: pos is third from last"
    assert position_axis("blocks.0.attn.hook_pattern") == -2, "[batch head_index query_pos key_pos]: the query axis"
    assert position_axis("blocks.0.ln1.hook_scale") == -2 and position_axis("blocks.0.ln1.hook_scale", split) == -3
    assert position_axis("some_module.hook_custom") == -2, "a hook outside the table is taken as [batch pos d]"


def test_only_q_is_copied_out_of_the_fused_qkv_buffer(model, tokens):
    _, only_q = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_q")
    q = only_q["blocks.0.attn.hook_q"]
    assert q.untyped_storage().nbytes() == q.numel() * q.element_size(), "caching q alone should not keep k and v alive"
    _, qkv = model.run_with_cache(tokens, names_filter=[f"blocks.0.attn.hook_{x}" for x in "qkv"])
    pointers = {qkv["q", 0].untyped_storage().data_ptr(), qkv["k", 0].untyped_storage().data_ptr(), qkv["v", 0].untyped_storage().data_ptr()}
    assert len(pointers) == 1, "q, k and v together fill their shared buffer, so no copy is needed"


def test_incl_bwd_stores_gradients_equal_to_autograd(model, tokens):
    wanted = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern", "hook_embed"]
    loss, cache = model.run_with_cache(tokens, names_filter=wanted, incl_bwd=True, return_type="loss")
    assert set(cache) == set(wanted) | {name + "_grad" for name in wanted}
    # Independent: keep the live activations and ask autograd for d loss / d activation.
    live: dict[str, torch.Tensor] = {}

    def keep(activation, hook):
        live[hook.name] = activation

    model.zero_grad()
    expected_loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(wanted, keep)])
    grads = torch.autograd.grad(expected_loss, [live[name] for name in wanted])
    for name, grad in zip(wanted, grads):
        torch.testing.assert_close(cache[name + "_grad"], grad, msg=f"{name}_grad is not d loss / d {name}")
    torch.testing.assert_close(loss, expected_loss)


def test_incl_bwd_errors(model, tokens):
    with pytest.raises(ValueError, match="must be a scalar.*return_type='loss'"):
        model.run_with_cache(tokens, names_filter="hook_embed", incl_bwd=True)
    with torch.no_grad(), pytest.raises(ValueError, match="needs gradients"):
        model.run_with_cache(tokens, names_filter="hook_embed", incl_bwd=True, return_type="loss")
    assert not any(point.has_hooks() for point in model.hook_dict.values())


def test_return_cache_object_false_gives_a_plain_dict(shared_tiny_model, tokens):
    model = shared_tiny_model  # only read: built once per session
    _, cache = model.run_with_cache(tokens, names_filter="hook_embed", return_cache_object=False)
    assert type(cache) is dict and list(cache) == ["hook_embed"]


def test_bad_pos_slice_fails_before_the_forward(shared_tiny_model, tokens):
    model = shared_tiny_model  # only read: built once per session
    with pytest.raises(TypeError, match="a slice must be"):
        model.run_with_cache(tokens, pos_slice=1.5)
    with pytest.raises(ValueError, match=r"pos_slice=\[0, 40\] does not fit hook_embed, which has 12 positions"):
        model.run_with_cache(tokens, names_filter="hook_embed", pos_slice=[0, 40])


@pytest.mark.parametrize("device, pattern", [
    ("gpu", r"device='gpu' is not a torch device; use e\.g\. 'cpu' or 'cuda:0'"),
    (3.5, r"device=3\.5 is not a torch device"),
])
def test_bad_device_fails_before_the_forward_with_a_clear_error(model, tokens, device, pattern):
    with pytest.raises(ValueError, match=pattern):
        model.run_with_cache(tokens, device=device)


def test_cuda_device_without_cuda_is_refused_before_the_forward(model, tokens, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on machines with a GPU
    with pytest.raises(ValueError, match=r"device='cuda' asks for CUDA, which this machine does not have"):
        model.run_with_cache(tokens, device="cuda")
