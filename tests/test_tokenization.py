"""Tokenization: to_tokens / to_str_tokens / to_string / single tokens / positions, and padded batches.

The central property: padding a batch (left or right) must not change what the model
computes at any real token, and the padding mask must come from the tokenizer, not from
comparing ids with the pad id (in GPT-2, BOS == EOS == PAD).
"""

from __future__ import annotations

import pytest
import torch

from conftest import build_bpe_tokenizer, tiny_config
from interp_transformer import HookedTransformer

SENTENCE = "When Mary and John went to the store, John gave a drink to Mary."
# Different lengths on purpose (31, 3 and 7 tokens without BOS); the longest fits n_ctx=48.
PROMPTS = [SENTENCE, "Hello world", "The quick brown fox"]
BOS = 0  # <|endoftext|>, which is also EOS and (once attached to a model) PAD


@pytest.fixture(scope="module")
def lm(bpe_tokenizer) -> HookedTransformer:
    # A large init range so logits, attention and position embeddings all matter: with
    # the default 0.02, a padding bug could hide below the 1e-5 tolerance.
    return HookedTransformer(tiny_config(d_vocab=300, init_range=0.3), tokenizer=bpe_tokenizer).eval()


@pytest.fixture(scope="module")
def alone(lm) -> dict[str, list[torch.Tensor]]:
    """Each prompt run on its own (no padding): logits, mean loss and per-token loss."""
    with torch.no_grad():
        return {
            "logits": [lm(prompt)[0] for prompt in PROMPTS],
            "loss": [lm(prompt, return_type="loss") for prompt in PROMPTS],
            "loss_per_token": [lm(prompt, return_type="loss", loss_per_token=True)[0] for prompt in PROMPTS],
        }


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------- to_tokens
def test_to_tokens_prepends_bos_as_an_id(lm, bpe_tokenizer):
    expected = [BOS] + ids_of(bpe_tokenizer, SENTENCE)
    tokens = lm.to_tokens(SENTENCE)
    assert tokens.dtype == torch.long and tokens.shape == (1, len(expected))
    assert tokens[0].tolist() == expected


def test_to_tokens_without_bos_is_the_plain_tokenization(lm, bpe_tokenizer):
    assert lm.to_tokens(SENTENCE, prepend_bos=False)[0].tolist() == ids_of(bpe_tokenizer, SENTENCE)


def test_to_tokens_default_prepend_bos_comes_from_the_config(bpe_tokenizer):
    model = HookedTransformer(tiny_config(default_prepend_bos=False), tokenizer=bpe_tokenizer)
    assert model.to_tokens("Hello world")[0].tolist() == ids_of(bpe_tokenizer, "Hello world")
    assert model.to_tokens("Hello world", prepend_bos=True)[0, 0].item() == BOS


@pytest.mark.parametrize("side", ["left", "right"])
def test_to_tokens_pads_a_batch_on_the_requested_side(lm, bpe_tokenizer, side):
    rows = [[BOS] + ids_of(bpe_tokenizer, p) for p in PROMPTS]
    width = max(map(len, rows))
    pad = bpe_tokenizer.pad_token_id
    expected = [[pad] * (width - len(r)) + r if side == "left" else r + [pad] * (width - len(r)) for r in rows]
    expected_mask = [
        [0] * (width - len(r)) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * (width - len(r)) for r in rows
    ]
    tokenized = lm.tokenize(PROMPTS, padding_side=side)
    assert tokenized.tokens.tolist() == expected
    assert tokenized.attention_mask.tolist() == expected_mask
    assert torch.equal(lm.to_tokens(PROMPTS, padding_side=side), tokenized.tokens)


def test_default_padding_side_follows_the_tokenizer():
    tokenizer = build_bpe_tokenizer()
    tokenizer.padding_side = "left"
    model = HookedTransformer(tiny_config(), tokenizer=tokenizer)
    mask = model.tokenize(PROMPTS).attention_mask
    assert mask[:, -1].all() and not mask[:, 0].all(), "with tokenizer.padding_side='left' the pads belong on the left"


def test_invalid_padding_side_is_refused(lm):
    with pytest.raises(ValueError, match="padding_side"):
        lm.to_tokens(PROMPTS, padding_side="middle")


def fresh_lm(bpe_tokenizer) -> HookedTransformer:
    """A model that has not warned yet: the truncation warning comes once per model."""
    return HookedTransformer(tiny_config(d_vocab=300), tokenizer=bpe_tokenizer).eval()


def test_to_tokens_truncates_to_n_ctx(bpe_tokenizer):
    lm = fresh_lm(bpe_tokenizer)
    long_text = " ".join([SENTENCE] * 4)
    full = lm.to_tokens(long_text, truncate=False)
    assert full.shape[1] > lm.cfg.n_ctx, "the test text should be longer than the context"
    with pytest.warns(UserWarning, match=rf"input of {full.shape[1]} tokens is longer than the model's context n_ctx=48"):
        truncated = lm.to_tokens(long_text)
    assert truncated.shape == (1, lm.cfg.n_ctx)
    assert torch.equal(truncated[0], full[0, : lm.cfg.n_ctx]), "truncation should keep the start of the text"
    with pytest.raises(ValueError, match="n_ctx"):
        lm(full)


def test_truncation_in_a_batch_only_cuts_long_rows(bpe_tokenizer):
    lm = fresh_lm(bpe_tokenizer)
    long_text = " ".join([SENTENCE] * 4)
    with pytest.warns(UserWarning, match="longer than the model's context"):
        tokenized = lm.tokenize([long_text, "Hello world"], padding_side="right")
    assert tokenized.tokens.shape == (2, lm.cfg.n_ctx)
    assert tokenized.attention_mask[0].all()
    assert tokenized.attention_mask[1].sum() == 1 + len(ids_of(lm.tokenizer, "Hello world"))


def test_truncation_warns_once_per_model_naming_the_way_out(bpe_tokenizer):
    import warnings

    lm, other = fresh_lm(bpe_tokenizer), fresh_lm(bpe_tokenizer)
    long_text = " ".join([SENTENCE] * 4)
    with pytest.warns(UserWarning, match=r"kept its first 48 tokens .*pass truncate=False"):
        lm(long_text)  # the forward truncates strings too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm(long_text)  # a second time on the same model: no warning
        lm(SENTENCE)  # an input that fits never warns
    with pytest.warns(UserWarning, match="longer than the model's context"):
        other.to_tokens(long_text)  # another model warns on its own


def test_strings_without_a_tokenizer_are_refused():
    model = HookedTransformer(tiny_config())
    with pytest.raises(ValueError, match="set_tokenizer"):
        model.to_tokens("Hello")
    with pytest.raises(ValueError, match="tokenizer"):
        model("Hello")


def test_attaching_a_tokenizer_without_pad_uses_eos():
    tokenizer = build_bpe_tokenizer()
    assert tokenizer.pad_token is None
    HookedTransformer(tiny_config(), tokenizer=tokenizer)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == BOS


# -------------------------------------------------------- to_str_tokens / to_string
def test_to_str_tokens_of_1d_tokens_decodes_each_token_alone(lm, bpe_tokenizer):
    tokens = lm.to_tokens(SENTENCE)[0]
    expected = [bpe_tokenizer.decode([t]) for t in tokens.tolist()]
    str_tokens = lm.to_str_tokens(tokens)
    assert str_tokens == expected, "to_str_tokens should give one string per token, not the whole text"
    assert str_tokens[0] == "<|endoftext|>" and str_tokens[4] == " Mary"


def test_to_str_tokens_of_a_string_prepends_bos(lm):
    assert lm.to_str_tokens("Hello world") == ["<|endoftext|>", "Hello", " w", "o", "r", "l", "d"]
    assert lm.to_str_tokens("Hello world", prepend_bos=False) == ["Hello", " w", "o", "r", "l", "d"]


def test_to_str_tokens_of_2d_tokens_gives_one_list_per_row(lm):
    tokens = lm.to_tokens(PROMPTS, padding_side="right")
    str_tokens = lm.to_str_tokens(tokens)
    assert len(str_tokens) == len(PROMPTS)
    for row, prompt_tokens in zip(str_tokens, tokens):
        assert isinstance(row, list) and len(row) == tokens.shape[1]
        assert row == lm.to_str_tokens(prompt_tokens)


def test_to_str_tokens_of_a_one_prompt_batch_is_flat_as_in_transformer_lens(lm):
    tokens = lm.to_tokens("Hello world")  # [1 pos], what to_tokens returns for one string
    assert lm.to_str_tokens(tokens) == ["<|endoftext|>", "Hello", " w", "o", "r", "l", "d"], (
        "a [1 pos] tensor should give a flat list, as TransformerLens does (not a list holding one list)"
    )
    assert lm.to_str_tokens(tokens) == lm.to_str_tokens("Hello world")


def test_to_str_tokens_of_a_0d_tensor_is_a_one_item_list(lm, bpe_tokenizer):
    token = ids_of(bpe_tokenizer, "Hello")[0]
    assert lm.to_str_tokens(torch.tensor(token)) == ["Hello"]
    assert lm.to_string(torch.tensor(token)) == "Hello"


def test_to_str_tokens_of_a_list_of_strings_gives_one_list_per_string(lm):
    assert lm.to_str_tokens(["Hello world", "The quick"]) == [lm.to_str_tokens("Hello world"), lm.to_str_tokens("The quick")]


@pytest.mark.parametrize("convert", ["to_str_tokens", "to_string"])
@pytest.mark.parametrize("ids, error, pattern", [
    ([5, 300], ValueError, r"token id 300 is not in the tokenizer's vocabulary \[0, 300\)"),  # HF would decode it as ""
    ([5, -1], ValueError, r"token id -1 is not in the tokenizer's vocabulary"),  # HF would raise OverflowError
    (torch.tensor([1.0, 2.0]), TypeError, r"tokens must be integer token ids, got dtype torch.float32"),
])
def test_decoding_ids_the_tokenizer_does_not_have_raises(lm, convert, ids, error, pattern):
    with pytest.raises(error, match=pattern):
        getattr(lm, convert)(torch.as_tensor(ids))


def test_to_str_tokens_round_trips_with_to_string(lm):
    for prompt in PROMPTS + ["Hello world! 12345 &amp; </script>"]:
        tokens = lm.to_tokens(prompt, prepend_bos=False)[0]
        str_tokens = lm.to_str_tokens(tokens)
        assert len(str_tokens) == len(tokens)
        assert "".join(str_tokens) == lm.to_string(tokens) == prompt


def test_to_str_tokens_accepts_a_list_of_ids(lm, bpe_tokenizer):
    ids = ids_of(bpe_tokenizer, "Hello world")
    assert lm.to_str_tokens(ids) == ["Hello", " w", "o", "r", "l", "d"]


def test_to_string_round_trips_1d_and_2d(lm):
    assert lm.to_string(lm.to_tokens(SENTENCE, prepend_bos=False)[0]) == SENTENCE
    assert lm.to_string(lm.to_tokens(SENTENCE)[0]) == "<|endoftext|>" + SENTENCE
    # A 2-D batch gives one string per row (right-padded rows end in pad tokens).
    batch = lm.to_tokens(PROMPTS, prepend_bos=False, padding_side="right")
    strings = lm.to_string(batch)
    assert isinstance(strings, list) and len(strings) == len(PROMPTS)
    for string, prompt in zip(strings, PROMPTS):
        assert string.startswith(prompt) and set(string[len(prompt):].split("<|endoftext|>")) <= {""}


def test_to_string_refuses_3d_tokens(lm):
    with pytest.raises(ValueError, match="batch pos"):
        lm.to_string(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch pos"):
        lm.to_str_tokens(torch.zeros(1, 2, 3, dtype=torch.long))


# ----------------------------------------------------------------- single tokens
def test_to_single_token(lm, bpe_tokenizer):
    (john,) = ids_of(bpe_tokenizer, " John")
    assert lm.to_single_token(" John") == john
    assert lm.to_single_token("<|endoftext|>") == BOS


@pytest.mark.parametrize("text", ["Mary", " Mary and John", ""])
def test_to_single_token_refuses_anything_but_one_token(lm, text):
    with pytest.raises(ValueError, match="not one"):
        lm.to_single_token(text)


def test_get_token_position_first_and_last(lm, bpe_tokenizer):
    ids = [BOS] + ids_of(bpe_tokenizer, SENTENCE)
    john = lm.to_single_token(" John")
    first, last = ids.index(john), len(ids) - 1 - ids[::-1].index(john)
    assert first != last, "the sentence should contain ' John' twice"
    assert lm.get_token_position(" John", SENTENCE) == first
    assert lm.get_token_position(" John", SENTENCE, mode="last") == last
    assert lm.get_token_position(john, lm.to_tokens(SENTENCE), mode="last") == last
    assert lm.get_token_position(john, lm.to_tokens(SENTENCE)[0]) == first
    assert lm.get_token_position(" John", SENTENCE, prepend_bos=False) == first - 1


def test_get_token_position_errors(lm):
    with pytest.raises(ValueError, match="does not occur"):
        lm.get_token_position(" dog", SENTENCE)
    with pytest.raises(ValueError, match="batch of 2"):
        lm.get_token_position(" John", lm.to_tokens([SENTENCE, SENTENCE]))
    with pytest.raises(ValueError, match="mode"):
        lm.get_token_position(" John", SENTENCE, mode="middle")
    with pytest.raises(ValueError, match="not one"):
        lm.get_token_position(" Mary and", SENTENCE)


# ------------------------------------------------------------- padded batches
MATERIALISE = {
    "fused": [],  # no hook on the pattern: scaled_dot_product_attention runs
    "pattern": [(lambda name: name.endswith("hook_pattern"), lambda pattern, hook: None)],
}


@pytest.mark.parametrize("attention_path", sorted(MATERIALISE))
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_each_prompt_alone(lm, alone, side, attention_path):
    # The reference runs the fused path; the batch runs either path, so the two paths are checked too.
    expected = alone["logits"]
    assert min(e.std().item() for e in expected) > 0.3, "logits are too small for this test to mean anything"
    with torch.no_grad(), lm.hooks(fwd_hooks=MATERIALISE[attention_path]):
        tokenized = lm.tokenize(PROMPTS, padding_side=side)
        from_strings = lm(PROMPTS, padding_side=side)
        from_tokens = lm(tokenized.tokens, attention_mask=tokenized.attention_mask)
    for row, prompt_logits in enumerate(expected):
        real = tokenized.attention_mask[row].bool()
        for name, batched in (("model(list_of_strings)", from_strings), ("model(tokens, attention_mask)", from_tokens)):
            torch.testing.assert_close(
                batched[row][real], prompt_logits, atol=1e-5, rtol=0,
                msg=lambda m, name=name, row=row: f"{name}, {side} padding, row {row}: padding leaked into real positions\n{m}",
            )


def test_left_padding_without_a_mask_changes_the_logits(lm, alone):
    # Guards the test above: shows that padding, if not masked, is visible at the 1e-5 tolerance.
    tokenized = lm.tokenize(PROMPTS, padding_side="left")
    with torch.no_grad():
        unmasked = lm(tokenized.tokens)
    real = tokenized.attention_mask[1].bool()
    assert (unmasked[1][real] - alone["logits"][1]).abs().max() > 1e-2


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_loss_is_the_token_weighted_mean_of_prompt_losses(lm, alone, side):
    losses = torch.stack(alone["loss"])
    with torch.no_grad():
        pairs = torch.tensor([len(lm.to_tokens(p)[0]) - 1 for p in PROMPTS], dtype=losses.dtype)
        expected = (losses * pairs).sum() / pairs.sum()
        batched = lm(PROMPTS, return_type="loss", padding_side=side)
        tokenized = lm.tokenize(PROMPTS, padding_side=side)
        from_tokens = lm(tokenized.tokens, return_type="loss", attention_mask=tokenized.attention_mask)
    assert not torch.isclose(expected, losses.mean(), atol=1e-4), "prompt lengths should differ enough to matter"
    torch.testing.assert_close(batched, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(from_tokens, expected, atol=1e-5, rtol=0)


def test_per_token_loss_is_zero_on_padding_and_matches_alone(lm, alone):
    with torch.no_grad():
        per_token = lm(PROMPTS, return_type="loss", loss_per_token=True, padding_side="left")
    tokenized = lm.tokenize(PROMPTS, padding_side="left")
    for row, expected in enumerate(alone["loss_per_token"]):
        n_pairs = expected.shape[0]
        torch.testing.assert_close(per_token[row, -n_pairs:], expected, atol=1e-5, rtol=0)
        assert (per_token[row, :-n_pairs] == 0).all(), "pairs that touch padding must not count"
    assert per_token.shape == (len(PROMPTS), tokenized.tokens.shape[1] - 1)


# ------------------------------------------- GPT-2 pitfall: BOS == EOS == PAD
def test_bos_equals_pad_yet_bos_is_a_real_token(lm):
    assert lm.tokenizer.pad_token_id == lm.tokenizer.bos_token_id == BOS
    for side in ("left", "right"):
        tokenized = lm.tokenize(PROMPTS, padding_side=side)
        lengths = tokenized.attention_mask.sum(-1)
        first_real = tokenized.tokens.shape[1] - lengths if side == "left" else torch.zeros_like(lengths)
        rows = torch.arange(len(PROMPTS))
        assert (tokenized.tokens[rows, first_real] == BOS).all()
        assert (tokenized.attention_mask[rows, first_real] == 1).all(), f"{side} padding masked out the BOS"
        inferred = (tokenized.tokens != lm.tokenizer.pad_token_id).long()
        assert not torch.equal(inferred, tokenized.attention_mask), "ids cannot tell BOS from padding here"


def test_mask_inferred_from_pad_ids_would_give_wrong_logits(lm, alone):
    # The reason the mask must come from the tokenizer: masking every id 0 drops the BOS.
    tokenized = lm.tokenize(PROMPTS, padding_side="right")
    wrong_mask = (tokenized.tokens != lm.tokenizer.pad_token_id).long()
    with torch.no_grad():
        wrong = lm(tokenized.tokens, attention_mask=wrong_mask)
    assert (wrong[0][1:] - alone["logits"][0][1:]).abs().max() > 1e-2


def test_endoftext_inside_a_prompt_is_a_real_token(lm):
    prompts = ["Hello<|endoftext|> world", SENTENCE]
    with torch.no_grad():
        expected = lm(prompts[0])[0]
    for side in ("left", "right"):
        tokenized = lm.tokenize(prompts, padding_side=side)
        n_real = 1 + len(ids_of(lm.tokenizer, prompts[0]))
        assert tokenized.attention_mask[0].sum() == n_real
        assert (tokenized.tokens[0][tokenized.attention_mask[0].bool()] == BOS).sum() == 2
        with torch.no_grad():
            batched = lm(prompts, padding_side=side)
        torch.testing.assert_close(batched[0][tokenized.attention_mask[0].bool()], expected, atol=1e-5, rtol=0)


def test_token_ids_without_a_mask_are_never_masked(lm):
    # model(tokens) must not guess padding from the ids: every id-0 token (here all BOS) is real.
    tokens = lm.to_tokens("Hello world")
    tokens = torch.cat([tokens, torch.full_like(tokens, BOS)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(lm(tokens), lm(tokens, attention_mask=torch.ones_like(tokens)), atol=0, rtol=0)
