"""The MLP against dense math for every activation function, with reference activations from Hugging Face."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.activations import FastGELUActivation, NewGELUActivation

from interp_transformer.components.mlp import MLP, gelu_new



# Independent definitions: Hugging Face's modules, or the textbook formula.
REFERENCE_ACTIVATIONS = {
    "gelu_new": NewGELUActivation(),
    "gelu_fast": FastGELUActivation(),
    "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    "silu": lambda x: x / (1.0 + torch.exp(-x)),
}


def _random_mlp(cfg, seed: int = 0) -> MLP:
    mlp = MLP(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in mlp.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * 0.3)
    return mlp


@pytest.mark.parametrize("act_fn", list(REFERENCE_ACTIVATIONS))
def test_mlp_matches_dense_math(cfg, act_fn):
    cfg = cfg.replace(act_fn=act_fn)
    mlp = _random_mlp(cfg)
    x = torch.randn(3, 6, cfg.d_model, generator=torch.Generator().manual_seed(1))
    seen = {}
    for point in (mlp.hook_pre, mlp.hook_post):
        point.add(lambda a, hook, key=point: seen.__setitem__(key, a.detach()))

    pre = x @ mlp.W_in + mlp.b_in
    post = REFERENCE_ACTIVATIONS[act_fn](pre)
    expected = post @ mlp.W_out + mlp.b_out
    out = mlp(x)
    torch.testing.assert_close(seen[mlp.hook_pre], pre, msg=f"[{act_fn}] hook_pre should be x @ W_in + b_in")
    torch.testing.assert_close(seen[mlp.hook_post], post, msg=f"[{act_fn}] hook_post should be the activation of hook_pre")
    torch.testing.assert_close(out, expected, msg=f"[{act_fn}] MLP output differs from act(x W_in + b_in) W_out + b_out")


def test_gelu_new_is_bit_identical_to_hugging_face():
    x = torch.linspace(-8, 8, 2001)
    assert torch.equal(gelu_new(x), NewGELUActivation()(x)), (
        "gelu_new should match transformers' NewGELUActivation bit for bit (GPT-2 parity depends on it)"
    )


def test_gelu_new_differs_from_exact_gelu():
    # Guards against the approximation silently being swapped for the erf GELU (they differ by ~1e-3 near |x|=2).
    x = torch.linspace(-3, 3, 61)
    assert (gelu_new(x) - torch.nn.functional.gelu(x)).abs().max() > 1e-4


def test_hook_post_replacement_flows_to_output(cfg):
    mlp = _random_mlp(cfg)
    mlp.hook_post.add(lambda a, hook: torch.zeros_like(a))
    x = torch.randn(2, 4, cfg.d_model)
    torch.testing.assert_close(mlp(x), mlp.b_out.expand(2, 4, -1), msg="zeroing hook_post should leave only b_out")


def test_parameter_shapes(cfg):
    mlp = MLP(cfg)
    shapes = {name: tuple(p.shape) for name, p in mlp.named_parameters()}
    assert shapes == {"W_in": (32, 64), "b_in": (64,), "W_out": (64, 32), "b_out": (32,)}, shapes
