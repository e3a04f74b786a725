"""Attention views: the three sources agree, selection picks the right heads, bad input fails clearly."""

from __future__ import annotations

import json

import pytest
import torch

from interp_transformer import HookedTransformer, vis
from interp_transformer.vis.attention_data import resolve_attention
from interp_transformer.vis.escaping import decode_circuitsvis_token_html

PROMPT = "When Mary and John went to the store"


def causal_pattern(n_heads: int, n_pos: int, seed: int = 0) -> torch.Tensor:
    scores = torch.randn(n_heads, n_pos, n_pos, generator=torch.Generator().manual_seed(seed))
    return scores.masked_fill(torch.ones(n_pos, n_pos).triu(1).bool(), float("-inf")).softmax(-1)


def spec_of(view: vis.View) -> dict:
    return json.loads(view.data_json())


@pytest.fixture
def tok_model(cfg, bpe_tokenizer) -> HookedTransformer:
    return HookedTransformer(cfg, tokenizer=bpe_tokenizer).eval()


@pytest.fixture
def prompt_cache(tok_model):
    _, cache = tok_model.run_with_cache(PROMPT, names_filter=lambda name: name.endswith("hook_pattern"))
    return cache


def test_model_prompt_matches_cache_and_tensor(tok_model, prompt_cache) -> None:
    tokens = tok_model.to_str_tokens(PROMPT)
    from_model = resolve_attention(tok_model, prompt=PROMPT, layer=1)
    from_cache = resolve_attention(prompt_cache, tokens, layer=1)
    from_dict = resolve_attention(dict(prompt_cache.items()), tokens, layer=1)
    from_tensor = resolve_attention(prompt_cache["blocks.1.attn.hook_pattern"], tokens, layer=1)
    for data in (from_cache, from_dict, from_tensor):
        torch.testing.assert_close(data.pattern, from_model.pattern)
        assert data.tokens == from_model.tokens == tokens
        assert data.head_names == from_model.head_names == [f"L1H{h}" for h in range(4)]


def test_several_layers_and_chosen_heads(tok_model, prompt_cache) -> None:
    data = resolve_attention(tok_model, prompt=PROMPT, layer=[0, 1], heads=[3, 1])
    assert data.head_names == ["L0H3", "L0H1", "L1H3", "L1H1"]
    expected = torch.stack([prompt_cache["blocks.0.attn.hook_pattern"][0, 3], prompt_cache["blocks.0.attn.hook_pattern"][0, 1],
                            prompt_cache["blocks.1.attn.hook_pattern"][0, 3], prompt_cache["blocks.1.attn.hook_pattern"][0, 1]])
    torch.testing.assert_close(data.pattern, expected)


def test_every_layer_by_default(tok_model) -> None:
    assert len(resolve_attention(tok_model, prompt=PROMPT).head_names) == 2 * 4


def test_batch_index_picks_the_prompt(tok_model) -> None:
    prompts = ["the dog sleeps", "Hello world! Hello there"]
    tokens = tok_model.to_tokens(prompts)
    _, cache = tok_model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    data = resolve_attention(tok_model, prompt=tokens, layer=0, batch_index=1)
    torch.testing.assert_close(data.pattern, cache["blocks.0.attn.hook_pattern"][1])
    assert data.tokens == tok_model.to_str_tokens(tokens[1])
    from_strings = resolve_attention(tok_model, prompt=prompts, layer=0, batch_index=1)
    torch.testing.assert_close(from_strings.pattern, data.pattern)


def test_views_carry_rounded_values_and_head_names() -> None:
    pattern = causal_pattern(2, 5)
    view = vis.attention_patterns(pattern, list("abcde"), layer=3)
    spec = spec_of(view)
    assert spec["component"] == "AttentionPatterns" and spec["scaled"] == {"attention": 1000}
    assert spec["props"]["headLabels"] == ["L3H0", "L3H1"]
    sent = torch.tensor(spec["props"]["attention"], dtype=torch.float64) / 1000
    assert (sent - pattern.double()).abs().max() <= 0.0005 + 1e-9, "values must be rounded to thousandths, no worse"
    assert all(isinstance(v, int) for v in spec["props"]["attention"][0][0]), "values go as integers (smaller files)"


def test_attention_heads_and_single_pattern_props() -> None:
    pattern = causal_pattern(3, 4)
    heads = spec_of(vis.attention_heads(pattern, list("wxyz"), heads=[2, 0], head_names=["first", "second"]))
    assert heads["component"] == "AttentionHeads" and heads["props"]["attentionHeadNames"] == ["first", "second"]
    assert heads["props"]["tokens"] == list("wxyz")
    single = spec_of(vis.attention_pattern(pattern, ["<s>", "b", "c", "d"], head=2, mask_upper_tri=False))
    assert single["component"] == "AttentionPattern" and not single["props"]["maskUpperTri"]
    assert torch.tensor(single["props"]["attention"]).shape == (4, 4)
    assert single["props"]["tokens"][0] == "<s>", "canvas-drawn tokens go unescaped"


def test_grid_tokens_are_escaped_for_circuitsvis_html() -> None:
    spec = spec_of(vis.attention_patterns(causal_pattern(1, 2), ["<s>", " a"]))
    assert spec["props"]["tokens"] == ["&lt;s&gt;", "&#x20;a"]
    assert [decode_circuitsvis_token_html(t) for t in spec["props"]["tokens"]] == ["<s>", " a"]


def test_downsample_keeps_rows_distributions_and_joins_tokens() -> None:
    pattern = causal_pattern(2, 5)
    merged, labels = vis.downsample_pattern(pattern, list("abcde"), 2)
    assert labels == ["ab", "cd", "e"]
    torch.testing.assert_close(merged.sum(-1), torch.ones(2, 3))
    expected_00 = pattern[:, 0:2, 0:2].sum(-1).mean(-1)  # mean over the query block of the key block's sum
    torch.testing.assert_close(merged[:, 0, 0], expected_00)
    data = resolve_attention(pattern, list("abcde"), downsample=2)
    assert data.tokens == ["ab", "cd", "e"] and any("downsampled" in note for note in data.notes)


def test_positions_window() -> None:
    data = resolve_attention(causal_pattern(1, 6), list("abcdef"), positions=slice(2, 5))
    assert data.tokens == ["c", "d", "e"] and data.pattern.shape == (1, 3, 3)
    with pytest.raises(ValueError, match="keeps no positions"):
        resolve_attention(causal_pattern(1, 6), list("abcdef"), positions=slice(4, 2))


def test_size_warning_offers_downsampling() -> None:
    pattern = causal_pattern(2, 40)
    with pytest.warns(vis.ViewSizeWarning, match="downsample=2"):
        vis.attention_patterns(pattern, [str(i) for i in range(40)], max_bytes=1000)
    small = vis.attention_patterns(pattern, [str(i) for i in range(40)], downsample=4, max_bytes=None)
    assert small.data_bytes < vis.attention_patterns(pattern, [str(i) for i in range(40)], max_bytes=None).data_bytes / 4


# ------------------------------------------------------------------ bad input
def test_wrong_rank_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="rank 5"):
        vis.attention_patterns(torch.rand(1, 1, 2, 3, 3), list("abc"))
    with pytest.raises(ValueError, match="rank 1"):
        vis.attention_pattern(torch.rand(3), list("abc"))


def test_non_square_pattern_is_an_error() -> None:
    with pytest.raises(ValueError, match="query_pos == key_pos"):
        vis.attention_patterns(torch.rand(2, 3, 4), list("abc"))


def test_rows_not_summing_to_one_warn() -> None:
    scores = torch.randn(2, 4, 4)
    with pytest.warns(vis.PatternWarning, match="do not sum to 1.*hook_attn_scores"):
        view = vis.attention_patterns(scores, list("abcd"))
    assert view.data_bytes > 0, "the view is still drawn"


def test_token_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="covers 4 positions but 3 tokens"):
        vis.attention_patterns(causal_pattern(2, 4), list("abc"))
    with pytest.raises(TypeError, match="not one string"):
        vis.attention_patterns(causal_pattern(2, 4), "abcd")
    with pytest.raises(TypeError, match="position 1 holds int"):
        vis.attention_patterns(causal_pattern(2, 2), ["a", 5])
    with pytest.raises(ValueError, match="tokens= is needed"):
        vis.attention_patterns(causal_pattern(2, 2))


def test_layer_out_of_range(tok_model, prompt_cache) -> None:
    with pytest.raises(IndexError, match=r"layer 2 is not available.*\[0, 1\]"):
        vis.attention_heads(tok_model, prompt=PROMPT, layer=2)
    with pytest.raises(IndexError, match=r"layer 5 is not available in the cache"):
        vis.attention_patterns(prompt_cache, ["x"] * 9, layer=5)
    with pytest.raises(TypeError, match="one layer"):
        vis.attention_patterns(causal_pattern(1, 2), list("ab"), layer=[0, 1])


def test_head_out_of_range() -> None:
    with pytest.raises(IndexError, match=r"head 4 is out of range.*4 heads \(0..3\)"):
        vis.attention_patterns(causal_pattern(4, 3), list("abc"), heads=[0, 4])
    with pytest.raises(IndexError, match="head -1"):
        vis.attention_pattern(causal_pattern(4, 3), list("abc"), head=-1)
    with pytest.raises(ValueError, match="pass head=<int>"):
        vis.attention_pattern(causal_pattern(4, 3), list("abc"))


def test_batch_index_out_of_range() -> None:
    with pytest.raises(IndexError, match="batch_index=3 is out of range for a batch of 2"):
        vis.attention_patterns(causal_pattern(4, 3)[None].expand(2, -1, -1, -1), list("abc"), batch_index=3)


def test_nan_and_wrong_source_type(model) -> None:
    pattern = causal_pattern(1, 3)
    pattern[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        vis.attention_patterns(pattern, list("abc"))
    with pytest.raises(TypeError, match="HookedTransformer with prompt="):
        vis.attention_patterns([[1.0]], ["a"])
    with pytest.raises(ValueError, match="pass prompt="):
        vis.attention_patterns(model)


def test_cache_without_patterns() -> None:
    with pytest.raises(KeyError, match="no attention patterns"):
        vis.attention_patterns({"blocks.0.hook_resid_pre": torch.zeros(1, 2, 3)}, list("ab"))
