"""TransformerBlock: the residual-stream bookkeeping, against the sub-modules composed by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from interp_transformer import HookedTransformer
from interp_transformer.components.block import TransformerBlock



def _random_block(cfg, seed: int = 0) -> TransformerBlock:
    block = TransformerBlock(cfg, layer=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in block.parameters():  # LayerNorm w/b too, so a skipped affine shows up
            param.copy_(torch.randn(param.shape, generator=g) * 0.3 + (1.0 if param.ndim == 1 and param.shape[0] == cfg.d_model else 0.0))
    return block


def _x(cfg, batch: int = 2, pos: int = 6) -> torch.Tensor:
    return torch.randn(batch, pos, cfg.d_model, generator=torch.Generator().manual_seed(1))


def _cache(model: HookedTransformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    cache = {}
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(lambda n: True, lambda a, hook: cache.setdefault(hook.name, a.clone()))])
    return cache


def test_residual_stream_bookkeeping_in_a_model(model, tokens):
    cache = _cache(model, tokens)
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], cache["hook_embed"] + cache["hook_pos_embed"])
    for layer in range(model.cfg.n_layers):
        p = f"blocks.{layer}."
        torch.testing.assert_close(
            cache[p + "hook_resid_mid"], cache[p + "hook_resid_pre"] + cache[p + "hook_attn_out"],
            msg=f"layer {layer}: resid_mid should be resid_pre + attn_out",
        )
        torch.testing.assert_close(
            cache[p + "hook_resid_post"], cache[p + "hook_resid_mid"] + cache[p + "hook_mlp_out"],
            msg=f"layer {layer}: resid_post should be resid_mid + mlp_out",
        )
        if layer + 1 < model.cfg.n_layers:
            torch.testing.assert_close(cache[p + "hook_resid_post"], cache[f"blocks.{layer + 1}.hook_resid_pre"])


def test_attn_only_block_skips_the_mlp(cfg, tokens):
    model = HookedTransformer(cfg.replace(attn_only=True))
    block = model.blocks[0]
    assert not hasattr(block, "mlp") and not hasattr(block, "ln2") and not hasattr(block, "hook_resid_mid")
    cache = _cache(model, tokens)
    torch.testing.assert_close(cache["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"])


@pytest.mark.parametrize("normalization_type", ["LN", "LNPre", None])
def test_block_equals_its_parts_composed_by_hand(cfg, normalization_type):
    cfg = cfg.replace(normalization_type=normalization_type)
    block = _random_block(cfg)
    x = _x(cfg)

    def norm(ln, value):
        if normalization_type is None:
            return value
        weight, bias = (ln.w, ln.b) if normalization_type == "LN" else (None, None)
        return F.layer_norm(value, (cfg.d_model,), weight, bias, eps=cfg.layer_norm_eps)

    with torch.no_grad():
        normalized = norm(block.ln1, x)
        resid_mid = x + block.attn(normalized, normalized, normalized)
        expected = resid_mid + block.mlp(norm(block.ln2, resid_mid))
        torch.testing.assert_close(block(x), expected, msg=f"[{normalization_type}] block != x + attn(ln1 x) + mlp(ln2 mid)")


@pytest.mark.parametrize(
    "switch", [dict(use_split_qkv_input=True), dict(use_attn_result=True), dict(use_hook_mlp_in=True), dict(use_split_qkv_input=True, normalization_type="LNPre")]
)
def test_optional_hooks_do_not_change_the_output(cfg, switch):
    base_cfg = cfg.replace(normalization_type=switch.get("normalization_type", "LN"))
    plain = _random_block(base_cfg)
    variant = TransformerBlock(cfg.replace(**switch), layer=0)
    variant.load_state_dict(plain.state_dict())  # same parameter names: the switches add hooks, not weights
    x = _x(cfg)
    with torch.no_grad():
        torch.testing.assert_close(variant(x), plain(x), rtol=1e-5, atol=1e-5, msg=f"{switch} changed the block's output")


def test_editing_mlp_in_leaves_the_residual_stream_alone(cfg):
    block = _random_block(cfg.replace(use_hook_mlp_in=True))
    x = _x(cfg)
    seen = {}
    block.hook_resid_mid.add(lambda a, hook: seen.__setitem__("mid", a.clone()))

    def zero_in_place(activation, hook):
        activation.zero_()  # in place, returning None: must not leak into resid_mid
        return None

    block.hook_mlp_in.add(zero_in_place)
    with torch.no_grad():
        out = block(x)
        expected = seen["mid"] + block.mlp(block.ln2(torch.zeros_like(x)))
    torch.testing.assert_close(out, expected, msg="hook_mlp_in should feed only the MLP; resid_post = resid_mid + mlp(ln2(0))")


def test_split_qkv_edit_changes_only_that_head_and_that_input(cfg):
    block = _random_block(cfg.replace(use_split_qkv_input=True))
    x = _x(cfg)
    seen = {}
    for key in ("q", "k", "v"):
        getattr(block.attn, f"hook_{key}").add(lambda a, hook, key=key: seen.__setitem__(key, a.clone()))
    with torch.no_grad():
        block(x)
        clean = dict(seen)

        def zero_head_1(activation, hook):
            activation = activation.clone()
            activation[:, :, 1] = 0.0
            return activation

        block.hook_k_input.add(zero_head_1)
        block(x)
    assert torch.equal(seen["q"], clean["q"]) and torch.equal(seen["v"], clean["v"]), "editing k_input must not touch q or v"
    torch.testing.assert_close(seen["k"][:, :, [0, 2, 3]], clean["k"][:, :, [0, 2, 3]], msg="other heads' keys changed")
    # Head 1's keys now come from ln1(0): a zero vector normalises to 0, then LayerNorm adds b.
    expected_k1 = (block.ln1.b @ block.attn.W_K[1] + block.attn.b_K[1]).detach().expand(2, 6, -1)
    torch.testing.assert_close(seen["k"][:, :, 1], expected_k1, msg="head 1's key should be computed from its zeroed input")


def test_parallel_block_reads_resid_pre_in_both_branches(cfg):
    from interp_transformer.components.block import ParallelTransformerBlock, make_block

    cfg = cfg.replace(parallel_attn_mlp=True)
    block = make_block(cfg, 0)
    assert isinstance(block, ParallelTransformerBlock) and not hasattr(block, "hook_resid_mid")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in block.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * 0.3 + (1.0 if param.ndim == 1 and param.shape[0] == cfg.d_model else 0.0))
        x = _x(cfg)
        ln = lambda module, value: F.layer_norm(value, (cfg.d_model,), module.w, module.b, eps=cfg.layer_norm_eps)
        normalized = ln(block.ln1, x)
        expected = x + block.attn(normalized, normalized, normalized) + block.mlp(ln(block.ln2, x))
        torch.testing.assert_close(block(x), expected, msg="parallel block != x + attn(ln1 x) + mlp(ln2 x)")
