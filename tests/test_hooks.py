"""Hook points and hook management: observe/replace, name filters, cleanup guarantees, permanence, backward hooks."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer, HookPoint



def _record(store: dict):
    def hook(activation, hook):
        store[hook.name] = activation.detach().clone()

    return hook


def _attached(model: HookedTransformer) -> dict[str, int]:
    return {name: len(p._fwd) + len(p._bwd) for name, p in model.hook_dict.items() if p.has_hooks()}


# ------------------------------------------------------------------ observing and replacing
def test_observing_hook_sees_the_activation_and_changes_nothing(model, tokens):
    baseline = model(tokens)
    seen = {}
    logits = model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", _record(seen))])
    torch.testing.assert_close(logits, baseline, rtol=0, atol=0, msg="a hook returning None must not change the output")
    # Independent computation of the token embedding: one-hot rows times W_E.
    expected = torch.nn.functional.one_hot(tokens, model.cfg.d_vocab).float() @ model.W_E
    torch.testing.assert_close(seen["hook_embed"], expected, msg="hook_embed should see W_E[tokens]")


def test_replacing_hook_changes_everything_downstream(model, tokens):
    last = model.cfg.n_layers - 1
    cache = {}
    model.run_with_hooks(tokens, fwd_hooks=[(lambda n: True, _record(cache))])

    patched = {}

    def zero(activation, hook):
        return torch.zeros_like(activation)

    logits = model.run_with_hooks(
        tokens,
        fwd_hooks=[(f"blocks.{last}.hook_mlp_out", zero), (lambda n: True, _record(patched))],
    )
    # Upstream of the patch: untouched.
    torch.testing.assert_close(patched[f"blocks.{last}.hook_resid_mid"], cache[f"blocks.{last}.hook_resid_mid"])
    # At and downstream of the patch: resid_post is now just resid_mid, and the logits follow from it.
    assert patched[f"blocks.{last}.hook_mlp_out"].abs().max() == 0, "later hooks should see the replaced value"
    torch.testing.assert_close(patched[f"blocks.{last}.hook_resid_post"], cache[f"blocks.{last}.hook_resid_mid"])
    with torch.no_grad():
        expected = model.unembed(model.ln_final(cache[f"blocks.{last}.hook_resid_mid"]))
    torch.testing.assert_close(logits, expected, msg="zeroing mlp_out should give logits of unembed(ln_final(resid_mid))")


def test_hooks_on_one_point_chain_in_order_and_prepend_goes_first(model, tokens):
    calls = []

    def add(value, label):
        def hook(activation, hook):
            calls.append(label)
            return activation + value

        return hook

    seen = {}
    model.add_hook("blocks.0.hook_attn_out", add(1.0, "a"))
    model.add_hook("blocks.0.hook_attn_out", add(10.0, "b"))
    model.add_hook("blocks.0.hook_attn_out", add(100.0, "first"), prepend=True)
    model.add_hook("blocks.0.hook_resid_mid", _record(seen))
    model.add_hook("blocks.0.hook_resid_pre", _record(seen))
    try:
        model(tokens)
    finally:
        model.reset_hooks()
    assert calls == ["first", "a", "b"], f"hooks ran in order {calls}; prepend=True should run first, then insertion order"
    plain = {}
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", _record(plain))])
    expected = seen["blocks.0.hook_resid_pre"] + plain["blocks.0.hook_attn_out"] + 111.0
    torch.testing.assert_close(seen["blocks.0.hook_resid_mid"], expected, msg="each hook should receive the previous one's output")


def test_hook_receives_its_hook_point_with_name_and_layer(model, tokens):
    points = []
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", lambda a, hook: points.append(hook))])
    (point,) = points
    assert isinstance(point, HookPoint) and point.name == "blocks.1.attn.hook_z"
    assert point.layer() == 1
    with pytest.raises(ValueError, match="not inside a block"):
        model.hook_dict["hook_embed"].layer()


IN_PLACE_POINTS = [
    "hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_scale", "blocks.0.ln1.hook_normalized",
    "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_attn_scores",
    "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z", "blocks.0.hook_attn_out", "blocks.0.hook_resid_mid",
    "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post", "blocks.1.hook_resid_post", "ln_final.hook_normalized",
]


@pytest.mark.parametrize("grad_enabled", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("hook_name", IN_PLACE_POINTS)
def test_in_place_edit_in_a_hook_equals_returning_an_edited_copy(model, tokens, hook_name, grad_enabled):
    # TransformerLens-style patching hooks write into the activation (`act[:, 2] = ...`), in notebooks usually
    # with grad enabled. That must work at every hook point: an activation that is an expand()ed broadcast, or
    # one of several views unbind() returned, refuses in-place writes.
    def edit_copy(activation, hook):
        edited = activation.clone()
        edited[:, 2] = 0.5
        return edited

    def edit_in_place(activation, hook):
        activation[:, 2] = 0.5
        return activation

    with torch.set_grad_enabled(grad_enabled):
        expected = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, edit_copy)])
        got, error = None, None
        try:
            got = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, edit_in_place)])
        except RuntimeError as caught:
            error = caught
    assert error is None, f"in-place edit at {hook_name} raised: {str(error)[:200]}"
    torch.testing.assert_close(got, expected, msg=f"in-place edit at {hook_name} did not match editing a copy")


# -------------------------------------------------------------------------------- filters
def _fired(model, tokens, name_filter) -> list[str]:
    names = []
    model.run_with_hooks(tokens, fwd_hooks=[(name_filter, lambda a, hook: names.append(hook.name))])
    return names


def test_filter_by_exact_name(model, tokens):
    assert _fired(model, tokens, "blocks.1.hook_resid_mid") == ["blocks.1.hook_resid_mid"]


def test_filter_by_list_of_names(model, tokens):
    names = ["blocks.1.mlp.hook_pre", "hook_pos_embed", "blocks.0.attn.hook_q"]
    assert _fired(model, tokens, names) == ["hook_pos_embed", "blocks.0.attn.hook_q", "blocks.1.mlp.hook_pre"], (
        "a list filter should attach to exactly those points (and they fire in forward order)"
    )


def test_filter_by_predicate(model, tokens):
    fired = _fired(model, tokens, lambda name: name.endswith("hook_resid_post"))
    assert fired == [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]


def test_unknown_hook_name_raises_key_error_with_close_matches(model, tokens):
    with pytest.raises(KeyError, match=r"unknown hook name 'blocks\.0\.hook_resid_pree'.*'blocks\.0\.hook_resid_pre'"):
        model.add_hook("blocks.0.hook_resid_pree", lambda a, hook: None)
    with pytest.raises(KeyError, match=r"closest valid names: \[.*'blocks\.1\.attn\.hook_pattern'"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_patern", lambda a, hook: None)])
    with pytest.raises(KeyError, match=r"unknown hook name 'zzz'; see model\.hook_points\(\)"):
        model.add_hook(["hook_embed", "zzz"], lambda a, hook: None)
    assert _attached(model) == {}, "a failed add_hook must leave no hooks behind"


def test_bad_filter_and_hook_types_raise_type_error(model):
    with pytest.raises(TypeError, match="a hook name filter must be"):
        model.add_hook(3, lambda a, hook: None)
    with pytest.raises(TypeError, match="must be strings"):
        model.add_hook(["hook_embed", 3], lambda a, hook: None)
    with pytest.raises(TypeError, match="hook must be callable"):
        model.add_hook("hook_embed", "not a function")
    with pytest.raises(ValueError, match=r"hook direction must be one of \('fwd', 'bwd'\), got 'sideways'"):
        model.add_hook("hook_embed", lambda a, hook: None, dir="sideways")


# -------------------------------------------------------------------------------- cleanup
def test_hooks_context_manager_removes_hooks_on_exit(model, tokens):
    names = []
    with model.hooks(fwd_hooks=[("hook_embed", lambda a, hook: names.append(hook.name))]):
        assert _attached(model) == {"hook_embed": 1}
        model(tokens)
    assert _attached(model) == {}, "hooks() should remove its hooks on exit"
    model(tokens)
    assert names == ["hook_embed"], "the hook fired after the context closed"


def test_hooks_removed_when_the_forward_raises(model, tokens):
    with pytest.raises(ValueError, match="out of range"):
        model.run_with_hooks(tokens + model.cfg.d_vocab, fwd_hooks=[("hook_embed", lambda a, hook: None)])
    assert _attached(model) == {}, "run_with_hooks leaked hooks after the forward raised"
    with pytest.raises(ValueError):
        with model.hooks(fwd_hooks=[("hook_embed", lambda a, hook: None)]):
            model(tokens + model.cfg.d_vocab)
    assert _attached(model) == {}, "hooks() leaked hooks after the forward raised"


def test_hooks_removed_when_the_hook_itself_raises(model, tokens):
    def broken(activation, hook):
        raise RuntimeError("hook bug")

    with pytest.raises(RuntimeError, match="hook bug"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_mid", broken), ("hook_embed", lambda a, hook: None)])
    assert _attached(model) == {}, "run_with_hooks leaked hooks after a hook raised"


def test_hooks_with_a_bad_second_name_removes_the_first(model):
    with pytest.raises(KeyError):
        with model.hooks(fwd_hooks=[("hook_embed", lambda a, hook: None), ("hook_nope", lambda a, hook: None)]):
            pass
    assert _attached(model) == {}, "hooks attached before the bad name should be removed"


def test_reset_hooks_end_false_keeps_hooks(model, tokens):
    names = []
    model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda a, hook: names.append(1))], reset_hooks_end=False)
    assert _attached(model) == {"hook_embed": 1}
    model(tokens)
    assert len(names) == 2, "with reset_hooks_end=False the hook should still fire on the next forward"
    model.reset_hooks()
    model(tokens)
    assert len(names) == 2 and _attached(model) == {}


def test_run_with_hooks_leaves_other_hooks_alone(model, tokens):
    fired = []
    model.add_hook("hook_pos_embed", lambda a, hook: fired.append("existing"))
    model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda a, hook: fired.append("temporary"))])
    assert _attached(model) == {"hook_pos_embed": 1}, "run_with_hooks should remove only the hooks it added"
    model.reset_hooks()


def test_permanent_hooks_survive_reset_but_not_full_reset(model, tokens):
    fired = []
    model.add_hook("hook_embed", lambda a, hook: fired.append("perm"), is_permanent=True)
    model.add_perma_hook("hook_pos_embed", lambda a, hook: fired.append("perma"))
    model.add_hook("blocks.0.hook_resid_pre", lambda a, hook: fired.append("temp"))
    model.reset_hooks()
    model(tokens)
    assert fired == ["perm", "perma"], f"after reset_hooks() got {fired}; permanent hooks should stay, others go"
    model.run_with_hooks(tokens)
    assert fired == ["perm", "perma"] * 2, "run_with_hooks must not remove permanent hooks"
    model.reset_hooks(including_permanent=True)
    model(tokens)
    assert fired == ["perm", "perma"] * 2 and _attached(model) == {}, "reset_hooks(including_permanent=True) should remove all"


def test_handle_remove_detaches_exactly_its_hooks(model, tokens):
    fired = []

    def hook(activation, hook):
        fired.append(hook.name)

    first = model.add_hook(lambda n: n.endswith("hook_resid_pre"), hook)
    second = model.add_hook("blocks.0.hook_resid_pre", hook)  # same function, separate attachment
    first.remove()
    model(tokens)
    assert fired == ["blocks.0.hook_resid_pre"], f"after removing the first handle, fired {fired}"
    first.remove()  # idempotent
    second.remove()
    assert _attached(model) == {}


# ------------------------------------------------------------------------- bad return values
def test_hook_returning_wrong_shape_raises_value_error_with_both_shapes(model, tokens):
    def squash(activation, hook):
        return activation[:, :1]

    with pytest.raises(ValueError) as info:
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", squash)])
    message = str(info.value)
    for part in ("squash", "blocks.0.hook_attn_out", "(3, 1, 32)", "(3, 12, 32)"):
        assert part in message, f"shape error should mention {part!r}: {message}"


def test_hook_returning_non_tensor_raises_type_error(model, tokens):
    def to_list(activation, hook):
        return activation.tolist()

    with pytest.raises(TypeError, match=r"hook to_list on blocks\.0\.mlp\.hook_pre returned list"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_pre", to_list)])



@pytest.mark.parametrize("hook_name, cast", [
    ("blocks.0.hook_resid_pre", torch.float64),  # LayerNorm next: torch would fail with "mixed dtype (CPU)"
    ("blocks.1.attn.hook_pattern", torch.float16),  # pattern @ v next: "expected scalar type Float but found Half"
    ("blocks.0.hook_mlp_out", torch.float64),  # only an addition next: torch would silently promote the stream
])
def test_hook_returning_another_dtype_raises_naming_hook_and_both_dtypes(model, tokens, hook_name, cast):
    def to_other_dtype(activation, hook):
        return activation.to(cast)

    with pytest.raises(TypeError) as info:
        model.run_with_hooks(tokens, fwd_hooks=[(hook_name, to_other_dtype)])
    message = str(info.value)
    for part in ("to_other_dtype", hook_name, str(cast), "torch.float32"):
        assert part in message, f"dtype error should mention {part!r}: {message}"


def test_hook_returning_a_tensor_on_another_device_raises(model, tokens):
    with pytest.raises(ValueError, match=r"hook <lambda> on hook_embed returned a tensor on meta, but the activation is on cpu"):
        model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda activation, hook: activation.to("meta"))])


def test_predicate_that_matches_no_hook_point_raises(model, tokens):
    def typo(name):
        return name.endswith("hook_patern")

    with pytest.raises(ValueError, match=r"the hook name predicate typo matches none of the model's 40 hook points"):
        model.run_with_hooks(tokens, fwd_hooks=[(typo, lambda activation, hook: activation * 0)])
    assert _attached(model) == {}


def test_shorthand_hook_name_suggests_the_full_names(model):
    with pytest.raises(KeyError, match=r"unknown hook name 'resid_pre'; closest valid names: \['blocks\.0\.hook_resid_pre', 'blocks\.1\.hook_resid_pre'\]"):
        model.add_hook("resid_pre", lambda activation, hook: None)


@pytest.mark.parametrize("specs, pattern", [
    (("hook_embed", lambda activation, hook: None), r"fwd_hooks is a list of \(name, hook\) pairs; wrap the single pair in a list"),
    ([lambda activation, hook: None], r"each item of fwd_hooks must be a \(name, hook\) pair, got <function"),
    ([("hook_embed",)], r"each item of fwd_hooks must be a \(name, hook\) pair, got \('hook_embed',\)"),
    ([("hook_embed", lambda activation, hook: None, "extra")], r"each item of fwd_hooks must be a \(name, hook\) pair"),
    ("hook_embed", r"fwd_hooks must be a list of \(name, hook\) pairs, got str"),
])
def test_malformed_hook_lists_raise_type_error_with_an_example(model, tokens, specs, pattern):
    with pytest.raises(TypeError, match=pattern):
        model.run_with_hooks(tokens, fwd_hooks=specs)
    assert _attached(model) == {}


# ------------------------------------------------------------------------------ backward
@pytest.mark.parametrize(
    "hook_name", ["hook_embed", "blocks.0.hook_resid_mid", "blocks.1.attn.hook_pattern", "blocks.0.mlp.hook_post", "ln_final.hook_normalized"]
)
def test_backward_hook_receives_gradient_of_the_activation(model, tokens, hook_name):
    captured = {}

    def keep(activation, hook):
        captured["act"] = activation

    loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, keep)])
    (expected,) = torch.autograd.grad(loss, captured["act"])

    grads = []
    loss = model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[(hook_name, lambda g, hook: grads.append(g.clone()))])
    loss.backward()
    assert len(grads) == 1, f"backward hook on {hook_name} fired {len(grads)} times, expected once"
    torch.testing.assert_close(grads[0], expected, msg=f"backward hook on {hook_name} got a gradient other than dloss/dact")


def test_backward_hook_can_replace_the_gradient(model, tokens):
    model(tokens, return_type="loss").backward()
    base_W_E, base_W_pos = model.W_E.grad.clone(), model.W_pos.grad.clone()
    model.zero_grad()
    loss = model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("hook_embed", lambda g, hook: 2 * g)])
    loss.backward()
    # W_E is reached only through hook_embed, W_pos only through hook_pos_embed.
    torch.testing.assert_close(model.W_E.grad, 2 * base_W_E, msg="doubling the grad at hook_embed should double W_E.grad")
    torch.testing.assert_close(model.W_pos.grad, base_W_pos, msg="W_pos does not pass through hook_embed")


def test_backward_hook_fires_on_later_backward_but_not_after(model, tokens):
    fired = []
    loss = model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("blocks.1.hook_resid_pre", lambda g, hook: fired.append(hook.name))])
    assert fired == [] and _attached(model) == {}, "the hook was removed after the forward; it must not have fired yet"
    loss.backward()
    assert fired == ["blocks.1.hook_resid_pre"], "the backward hook should fire on the later .backward()"
    model(tokens, return_type="loss").backward()
    assert fired == ["blocks.1.hook_resid_pre"], "a forward run without hooks must not call the old backward hook"


def test_backward_hook_wrong_shape_raises_value_error(model, tokens):
    def squash(grad, hook):
        return grad[:, :1]

    loss = model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("hook_embed", squash)])
    with pytest.raises(ValueError, match=r"hook squash on hook_embed returned shape \(3, 1, 32\).*\(3, 12, 32\)"):
        loss.backward()
