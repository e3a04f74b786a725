"""Token and positional embeddings: lookups against one-hot products, shapes, and position shifts under a mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interp_transformer import HookedTransformer
from interp_transformer.components.embed import Embed, PosEmbed



def _filled(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=g))
    return module


def test_embed_is_one_hot_times_W_E(cfg, tokens):
    embed = _filled(Embed(cfg))
    out = embed(tokens)
    assert out.shape == (*tokens.shape, cfg.d_model)
    expected = F.one_hot(tokens, cfg.d_vocab).float() @ embed.W_E
    torch.testing.assert_close(out, expected, msg="Embed should pick row W_E[token] for each token")


def test_pos_embed_shape_and_rows(cfg, tokens):
    pos_embed = _filled(PosEmbed(cfg))
    out = pos_embed(tokens)
    batch, pos = tokens.shape
    assert out.shape == (batch, pos, cfg.d_model), "PosEmbed should broadcast over the batch: [batch pos d_model]"
    for b in range(batch):
        torch.testing.assert_close(out[b], pos_embed.W_pos[:pos], msg="position i should read W_pos[i], for every prompt")


def test_pos_embed_offset_for_cached_prefix(cfg):
    pos_embed = _filled(PosEmbed(cfg))
    out = pos_embed(torch.zeros(2, 3, dtype=torch.long), past_kv_pos_offset=5)
    torch.testing.assert_close(out[1], pos_embed.W_pos[5:8], msg="with 5 cached positions, new tokens sit at 5, 6, 7")


def test_pos_embed_shifts_positions_under_a_padding_mask(cfg):
    pos_embed = _filled(PosEmbed(cfg))
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = pos_embed(torch.zeros(3, 5, dtype=torch.long), attention_mask=mask)
    W_pos = pos_embed.W_pos
    # Hand-worked positions: real tokens count from 0; padding is clamped (left) or repeats the last (right).
    expected_positions = [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2], [0, 1, 2, 3, 4]]
    for b, positions in enumerate(expected_positions):
        torch.testing.assert_close(out[b], W_pos[positions], msg=f"prompt {b}: positions should be {positions}")


def test_pos_embed_mask_longer_than_tokens_uses_the_last_positions(cfg):
    pos_embed = _filled(PosEmbed(cfg))
    mask = torch.tensor([[0, 1, 1, 1, 1]])  # one padding slot, then 3 cached tokens, then 1 new token
    out = pos_embed(torch.zeros(1, 1, dtype=torch.long), attention_mask=mask)
    torch.testing.assert_close(out[0], pos_embed.W_pos[[3]], msg="the new token is the 4th real token: position 3")


def test_left_padded_prompt_gives_the_same_logits_as_unpadded(cfg, tokens):
    model = HookedTransformer(cfg).eval()
    prompt = tokens[:1, :8]
    padded = torch.cat([torch.full((1, 4), 7), prompt], dim=1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], dim=1)
    with torch.no_grad():
        alone = model(prompt)
        fused = model(padded, attention_mask=mask)[:, 4:]
        explicit = model.run_with_hooks(padded, attention_mask=mask, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), lambda a, hook: None)])[:, 4:]
    torch.testing.assert_close(fused, alone, msg="left padding changed the real tokens' logits (positions or key mask wrong)")
    torch.testing.assert_close(explicit, alone, msg="left padding changed the logits on the explicit-pattern path")


def test_pos_embed_output_can_be_edited_in_place(cfg, tokens):
    # Patching hooks write into activations; a stride-0 broadcast view makes `act[:, i] = ...` raise.
    pos_embed = _filled(PosEmbed(cfg))
    out = pos_embed(tokens)
    error = None
    try:
        out[:, 2] = 0.0
    except RuntimeError as caught:
        error = caught
    assert error is None, f"PosEmbed returned a tensor that cannot be edited in place ({error}); clone() after expand()"
    assert (out[:, 2] == 0).all() and torch.equal(out[:, 3], pos_embed.W_pos[3].expand(tokens.shape[0], -1))
    assert pos_embed.W_pos[2].abs().sum() > 0, "editing the output must not write into W_pos"
