"""Attention against a per-head loop, fused vs explicit-pattern paths, causality, masks and per-head results."""

from __future__ import annotations

import math

import pytest
import torch

from interp_transformer.components.attention import Attention, attention_allowed



def _random_attention(cfg, seed: int = 0) -> Attention:
    attn = Attention(cfg, layer=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in attn.parameters():  # biases too, so a dropped bias shows up
            param.copy_(torch.randn(param.shape, generator=g) * 0.2)
    return attn


def _inputs(cfg, batch: int = 2, pos: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, pos, cfg.d_model, generator=torch.Generator().manual_seed(seed))


def _force_pattern_path(attn: Attention) -> None:
    """A no-op hook on hook_pattern makes the module materialise the pattern instead of calling SDPA."""
    attn.hook_pattern.add(lambda a, hook: None)


def _record(point, store: dict, key: str) -> None:
    point.add(lambda a, hook: store.__setitem__(key, a.detach().clone()))


def per_head_loop(attn: Attention, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Textbook causal multi-head attention, one (prompt, head) at a time, no einsum."""
    batch, pos, _ = x.shape
    out = torch.zeros_like(x)
    for b in range(batch):
        for h in range(attn.cfg.n_heads):
            q = x[b] @ attn.W_Q[h] + attn.b_Q[h]
            k = x[b] @ attn.W_K[h] + attn.b_K[h]
            v = x[b] @ attn.W_V[h] + attn.b_V[h]
            scores = (q @ k.T) / attn.cfg.attn_scale
            for i in range(pos):
                for j in range(pos):
                    padded_key = key_mask is not None and key_mask[b, j] == 0 and i != j
                    if j > i or padded_key:
                        scores[i, j] = float("-inf")
            pattern = torch.softmax(scores, dim=-1)
            out[b] += (pattern @ v) @ attn.W_O[h]
    return out + attn.b_O


@pytest.mark.parametrize("path", ["fused", "pattern"])
def test_matches_per_head_loop(cfg, path):
    attn = _random_attention(cfg)
    if path == "pattern":
        _force_pattern_path(attn)
    x = _inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, x, x), per_head_loop(attn, x), msg=f"[{path} path] differs from a per-head loop")


def test_custom_attn_scale_is_used(cfg):
    cfg = cfg.replace(attn_scale=1.7)
    attn = _random_attention(cfg)
    x = _inputs(cfg)
    with torch.no_grad():
        expected = per_head_loop(attn, x)
        torch.testing.assert_close(attn(x, x, x), expected, msg="fused path ignores cfg.attn_scale")
        _force_pattern_path(attn)
        torch.testing.assert_close(attn(x, x, x), expected, msg="pattern path ignores cfg.attn_scale")


@pytest.mark.parametrize("with_mask", [False, True])
def test_fused_and_pattern_paths_agree(cfg, with_mask):
    attn = _random_attention(cfg, seed=4)
    x = _inputs(cfg, batch=3, pos=9)
    allowed = None
    if with_mask:
        key_mask = torch.ones(3, 9, dtype=torch.long)
        key_mask[0, :4] = 0  # left padding
        key_mask[1, 6:] = 0  # right padding
        allowed = attention_allowed(9, 9, key_mask, x.device)
    with torch.no_grad():
        fused = attn(x, x, x, allowed)
        _force_pattern_path(attn)
        explicit = attn(x, x, x, allowed)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5, msg="SDPA fast path and the explicit pattern disagree")


def test_forcing_the_slow_path_via_scores_hook_also_agrees(cfg):
    attn = _random_attention(cfg, seed=5)
    x = _inputs(cfg)
    with torch.no_grad():
        fused = attn(x, x, x)
        seen = {}
        _record(attn.hook_attn_scores, seen, "scores")
        explicit = attn(x, x, x)
    assert "scores" in seen, "a hook on hook_attn_scores should make the module compute the scores"
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_padding_mask_matches_per_head_loop(cfg):
    attn = _random_attention(cfg, seed=6)
    x = _inputs(cfg, batch=2, pos=6)
    key_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    allowed = attention_allowed(6, 6, key_mask, x.device)
    with torch.no_grad():
        expected = per_head_loop(attn, x, key_mask)
        torch.testing.assert_close(attn(x, x, x, allowed), expected, msg="fused path mishandles the padding mask")
        _force_pattern_path(attn)
        torch.testing.assert_close(attn(x, x, x, allowed), expected, msg="pattern path mishandles the padding mask")


@pytest.mark.parametrize("path", ["fused", "pattern"])
def test_causal_future_tokens_do_not_change_earlier_outputs(cfg, path):
    attn = _random_attention(cfg)
    if path == "pattern":
        _force_pattern_path(attn)
    x = _inputs(cfg, pos=8)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 3, cfg.d_model) * 10
    with torch.no_grad():
        before, after = attn(x, x, x), attn(changed, changed, changed)
    torch.testing.assert_close(after[:, :5], before[:, :5], msg=f"[{path}] positions < 5 saw the future (causal mask broken)")
    assert not torch.allclose(after[:, 5:], before[:, 5:]), "changing positions >= 5 should change their own outputs"


def test_pattern_is_causal_and_rows_sum_to_one(cfg):
    attn = _random_attention(cfg)
    seen = {}
    _record(attn.hook_pattern, seen, "pattern")
    _record(attn.hook_attn_scores, seen, "scores")
    x = _inputs(cfg, pos=6)
    with torch.no_grad():
        attn(x, x, x)
    pattern, scores = seen["pattern"], seen["scores"]
    assert pattern.shape == (2, cfg.n_heads, 6, 6), "pattern should be [batch head_index query_pos key_pos]"
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, cfg.n_heads, 6), msg="pattern rows should sum to 1")
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert (pattern[..., future] == 0).all(), "no attention to future keys"
    assert torch.isneginf(scores[..., future]).all(), "masked scores should be -inf (as in TransformerLens)"
    assert torch.isfinite(scores[..., ~future]).all()
    assert torch.equal(pattern[:, :, 0, 0], torch.ones(2, cfg.n_heads)), "the first query can only attend to itself"


def test_scores_are_scaled_dot_products(cfg):
    attn = _random_attention(cfg)
    seen = {}
    for key in ("q", "k", "scores"):
        _record({"q": attn.hook_q, "k": attn.hook_k, "scores": attn.hook_attn_scores}[key], seen, key)
    x = _inputs(cfg, pos=5)
    with torch.no_grad():
        attn(x, x, x)
    q, k = seen["q"], seen["k"]
    expected = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(cfg.d_head)
    lower = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(seen["scores"][..., lower], expected[..., lower], msg="scores should be q.k / sqrt(d_head)")


def test_attn_result_sums_to_output(cfg):
    cfg = cfg.replace(use_attn_result=True)
    attn = _random_attention(cfg)
    seen = {}
    _record(attn.hook_result, seen, "result")
    _record(attn.hook_z, seen, "z")
    x = _inputs(cfg)
    with torch.no_grad():
        out = attn(x, x, x)
    result, z = seen["result"], seen["z"]
    assert result.shape == (2, 7, cfg.n_heads, cfg.d_model), "hook_result should be [batch pos head_index d_model]"
    torch.testing.assert_close(result.sum(-2) + attn.b_O, out, msg="per-head results + b_O should sum to the output")
    for h in range(cfg.n_heads):
        torch.testing.assert_close(result[:, :, h], z[:, :, h] @ attn.W_O[h].detach(), msg=f"head {h}'s result != z_h @ W_O[h]")
    with torch.no_grad():
        torch.testing.assert_close(out, per_head_loop(attn, x))


def test_zeroing_one_head_via_hook_z(cfg):
    attn = _random_attention(cfg)
    x = _inputs(cfg)

    def ablate_head_2(z, hook):
        z = z.clone()
        z[:, :, 2] = 0
        return z

    with torch.no_grad():
        full = per_head_loop(attn, x)
        seen = {}
        _record(attn.hook_z, seen, "z")
        attn(x, x, x)
        attn.hook_z.clear()
        attn.hook_z.add(ablate_head_2)
        ablated = attn(x, x, x)
        expected = full - seen["z"][:, :, 2] @ attn.W_O[2]
    torch.testing.assert_close(ablated, expected, msg="zeroing head 2's z should remove exactly its W_O contribution")


def test_split_inputs_equal_shared_input(cfg):
    attn = _random_attention(cfg)
    x = _inputs(cfg)
    split = x[:, :, None, :].expand(-1, -1, cfg.n_heads, -1)
    with torch.no_grad():
        torch.testing.assert_close(attn(split, split, split), attn(x, x, x), msg="identical per-head inputs should equal the shared input")


def test_split_inputs_route_each_head_separately(cfg):
    attn = _random_attention(cfg)
    x = _inputs(cfg)
    q_in = x[:, :, None, :].repeat(1, 1, cfg.n_heads, 1)
    q_in[:, :, 1] = 0.0  # only head 1's query input changes
    seen = {}
    _record(attn.hook_q, seen, "q")
    with torch.no_grad():
        attn(q_in, x, x)
    expected_q_head1 = torch.zeros(2, 7, cfg.d_head) + attn.b_Q[1].detach()
    torch.testing.assert_close(seen["q"][:, :, 1], expected_q_head1, msg="head 1's query should read only its own input copy")
    torch.testing.assert_close(seen["q"][:, :, 0], (x @ attn.W_Q[0] + attn.b_Q[0]).detach())


def test_attention_allowed_hand_worked():
    assert attention_allowed(4, 4, None, torch.device("cpu")) is None, "plain causal attention needs no explicit mask"
    cached = attention_allowed(2, 4, None, torch.device("cpu"))
    # Two new queries at positions 2 and 3 of 4 keys.
    assert cached.shape == (1, 1, 2, 4)
    assert cached[0, 0].tolist() == [[True, True, True, False], [True, True, True, True]]
    mask = torch.tensor([[0, 1, 1]])
    allowed = attention_allowed(3, 3, mask, torch.device("cpu"))
    assert allowed.shape == (1, 1, 3, 3)
    # The padding query at 0 keeps itself (no empty softmax row); real queries never see the padding key.
    assert allowed[0, 0].tolist() == [[True, False, False], [False, True, False], [False, True, True]]


def test_parameter_shapes(cfg):
    attn = Attention(cfg)
    shapes = {name: tuple(p.shape) for name, p in attn.named_parameters()}
    assert shapes == {
        "W_Q": (4, 32, 8), "W_K": (4, 32, 8), "W_V": (4, 32, 8), "W_O": (4, 8, 32),
        "b_Q": (4, 8), "b_K": (4, 8), "b_V": (4, 8), "b_O": (32,),
    }, shapes
