"""HookedModule.attached_hook_points: another module's hook points reachable under a prefix, then restored."""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer, HookPoint
from interp_transformer.hooks import HookedModule


class Doubler(HookedModule):
    """A tiny hooked module: hook_in sees x, hook_out sees 2x."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_in, self.hook_out = HookPoint(), HookPoint()
        self.setup_hooks()

    def forward(self, x):
        return self.hook_out(2 * self.hook_in(x))


def test_attached_points_are_cached_by_prefixed_name_in_forward_order(model: HookedTransformer, tokens):
    doubler = Doubler()
    target = "blocks.0.hook_resid_mid"

    def run_doubler(activation, hook):
        doubler(activation)  # fires the attached points while the model runs

    model.add_hook(target, run_doubler, is_permanent=True)
    try:
        with model.attached_hook_points(target, doubler, after=target) as added:
            assert added == [f"{target}.hook_in", f"{target}.hook_out"]
            names = model.hook_points()
            assert names[names.index(target) + 1 : names.index(target) + 3] == added, (
                "attached points should be listed right after the hook they run inside"
            )
            _, cache = model.run_with_cache(tokens, names_filter=[target] + added)
        assert f"{target}.hook_in" not in model.hook_dict, "the prefixed names must be gone after the block"
    finally:
        model.reset_hooks(including_permanent=True)
    torch.testing.assert_close(cache[f"{target}.hook_in"], cache[target])
    torch.testing.assert_close(cache[f"{target}.hook_out"], 2 * cache[target], msg="hook_out should see 2 * the input")
    assert doubler.hook_points() == ["hook_in", "hook_out"] and doubler.hook_in.name == "hook_in", (
        "the attached module's own names must be restored on exit"
    )


def test_attaching_twice_or_over_an_existing_name_is_refused_and_restored_on_error(model: HookedTransformer):
    doubler = Doubler()
    before = model.hook_points()
    with model.attached_hook_points("blocks.0.hook_resid_pre", doubler):
        with pytest.raises(ValueError, match="already attached"):
            with model.attached_hook_points("blocks.1.hook_resid_pre", doubler):
                pass
    with pytest.raises(RuntimeError, match="boom"):
        with model.attached_hook_points("blocks.0.hook_resid_pre", doubler):
            raise RuntimeError("boom")
    assert model.hook_points() == before and doubler.hook_in.name == "hook_in", "an error must not leave points attached"

    class Clash(HookedModule):
        def __init__(self) -> None:
            super().__init__()
            self.hook_resid_pre = HookPoint()
            self.setup_hooks()

    with pytest.raises(ValueError, match="already registered"):
        with model.attached_hook_points("blocks.0", Clash()):
            pass
