"""Generation: greedy decoding against Hugging Face's generate, the key/value cache against full recomputation.

The independent computations are Hugging Face ``generate`` on the same random GPT-2 weights and
our own forward pass over the whole sequence (what the cache must reproduce).
"""

from __future__ import annotations

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.components.kv_cache import KeyValueCache
from interp_transformer.generation import sample_next_token


@pytest.fixture
def hf_and_ours(make_hf_gpt2):
    """A random HF GPT-2 with every parameter perturbed (so no tensor is trivially 0 or 1), and ours loaded from it."""
    hf_model, directory = make_hf_gpt2(seed=3, initializer_range=0.3, attn_implementation="eager", n_positions=64)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for param in hf_model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    hf_model.save_pretrained(directory)
    return hf_model, HookedTransformer.from_pretrained(directory).eval()


def prompts(batch: int = 2, pos: int = 7, seed: int = 5) -> torch.Tensor:
    return torch.randint(1, 300, (batch, pos), generator=torch.Generator().manual_seed(seed))


def left_padding_mask(tokens: torch.Tensor, pads: list[int]) -> torch.Tensor:
    mask = torch.ones_like(tokens)
    for row, n in enumerate(pads):
        mask[row, :n] = 0
    return mask


def hf_greedy(hf_model, tokens, mask, max_new_tokens, use_cache=True) -> torch.Tensor:
    return hf_model.generate(
        tokens, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
        pad_token_id=0, eos_token_id=0, use_cache=use_cache,
    )


# ---------------------------------------------------------------- HF parity
@pytest.mark.parametrize("use_past_kv_cache", [True, False])
def test_greedy_matches_hugging_face(hf_and_ours, use_past_kv_cache):
    hf_model, model = hf_and_ours
    tokens = prompts()
    expected = hf_greedy(hf_model, tokens, torch.ones_like(tokens), 20)
    ours = model.generate(tokens, 20, temperature=0, eos_token_id=0, use_past_kv_cache=use_past_kv_cache)
    assert len(set(expected[:, 7:].flatten().tolist())) > 3, "HF generated a constant; the comparison would be vacuous"
    assert ours.tolist() == expected.tolist(), "greedy tokens differ from Hugging Face generate"


@pytest.mark.parametrize("use_past_kv_cache", [True, False])
def test_left_padded_batch_matches_hugging_face(hf_and_ours, use_past_kv_cache):
    hf_model, model = hf_and_ours
    tokens = prompts(batch=3, pos=9)
    mask = left_padding_mask(tokens, [0, 4, 2])
    tokens = tokens.masked_fill(mask == 0, 0)
    expected = hf_greedy(hf_model, tokens, mask, 15)
    ours = model.generate(tokens, 15, temperature=0, eos_token_id=0, attention_mask=mask, use_past_kv_cache=use_past_kv_cache)
    assert ours.tolist() == expected.tolist(), "greedy tokens of a left-padded batch differ from Hugging Face"


def test_padded_prompt_generates_what_it_generates_alone(hf_and_ours):
    _, model = hf_and_ours
    tokens = prompts(batch=2, pos=8)
    mask = left_padding_mask(tokens, [0, 3])
    batched = model.generate(tokens, 10, temperature=0, stop_at_eos=False, attention_mask=mask)
    alone = model.generate(tokens[1:, 3:], 10, temperature=0, stop_at_eos=False)
    assert batched[1, 3:].tolist() == alone[0].tolist(), "left padding changed what the prompt generates"


# ---------------------------------------------------------- key/value cache
def test_cache_and_recomputation_give_the_same_tokens(model):
    tokens = prompts(batch=3, pos=6)
    mask = left_padding_mask(tokens, [0, 2, 5])
    cached = model.generate(tokens, 25, temperature=0, stop_at_eos=False, attention_mask=mask)
    recomputed = model.generate(tokens, 25, temperature=0, stop_at_eos=False, attention_mask=mask, use_past_kv_cache=False)
    assert cached.shape == (3, 31)
    assert cached.tolist() == recomputed.tolist()


@pytest.mark.parametrize("hooked_pattern", [False, True], ids=["fused-attention", "pattern-path"])
def test_incremental_forward_with_cache_matches_full_forward(model, hooked_pattern):
    tokens = prompts(batch=2, pos=10)
    mask = left_padding_mask(tokens, [0, 3])
    hooks = [("blocks.1.attn.hook_pattern", lambda pattern, hook: None)] if hooked_pattern else []
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        full = model(tokens, attention_mask=mask)
        cache = KeyValueCache.empty(model.cfg, 2, model.device)
        first = model(tokens[:, :6], attention_mask=mask[:, :6], past_kv_cache=cache)
        second = model(tokens[:, 6:9], past_kv_cache=cache)
        third = model(tokens[:, 9:], past_kv_cache=cache)
    assert len(cache) == 10 and cache.attention_mask.tolist() == mask.tolist()
    incremental = torch.cat([first, second, third], dim=1)
    real = mask.bool()
    torch.testing.assert_close(incremental[real], full[real], msg="cached forward differs from the full forward")


def test_cache_refuses_a_sequence_past_the_context(model):
    cache = KeyValueCache.empty(model.cfg, 1, model.device)
    model(torch.zeros(1, model.cfg.n_ctx - 1, dtype=torch.long), past_kv_cache=cache)
    with pytest.raises(ValueError, match="n_ctx"):
        model(torch.zeros(1, 2, dtype=torch.long), past_kv_cache=cache)


# -------------------------------------------------------------------- hooks
def test_hooks_fire_once_per_step(model):
    seen = []
    model.add_hook("blocks.0.attn.hook_z", lambda z, hook: seen.append(tuple(z.shape)))
    try:
        model.generate(prompts(batch=1, pos=5), 4, temperature=0, stop_at_eos=False)
    finally:
        model.reset_hooks()
    assert seen == [(1, 5, 4, 8)] + [(1, 1, 4, 8)] * 3, "expected the prompt then one position per new token"


def test_hooks_change_what_is_generated(model):
    tokens = prompts(batch=1, pos=5)
    plain = model.generate(tokens, 6, temperature=0, stop_at_eos=False)
    force_7 = lambda residual, hook: residual + 100 * model.W_U[:, 7]  # noqa: E731
    with model.hooks(fwd_hooks=[("ln_final.hook_normalized", force_7)]):
        steered = model.generate(tokens, 6, temperature=0, stop_at_eos=False)
    assert plain[0, 5:].tolist() != [7] * 6 and steered[0, 5:].tolist() == [7] * 6


# -------------------------------------------------------------- EOS, sampling
def test_stop_at_eos_fills_finished_rows_and_stops(model):
    tokens = prompts(batch=2, pos=5, seed=7)
    greedy = model.generate(tokens, 12, temperature=0, stop_at_eos=False)[:, 5:].tolist()
    # EOS is a token both rows emit, row 0 first: row 0 then waits (EOS-filled) until row 1 emits it too.
    shared = [token for token in greedy[0] if token in greedy[1] and greedy[0].index(token) < greedy[1].index(token)]
    assert shared, f"no token is emitted by both rows, row 0 first ({greedy}); pick another prompt seed"
    eos = shared[0]
    first_0, first_1 = greedy[0].index(eos), greedy[1].index(eos)
    assert first_1 < 11, "row 1 emits EOS only at the last step; the early stop would be invisible"
    expected = [greedy[0][: first_0 + 1] + [eos] * (first_1 - first_0), greedy[1][: first_1 + 1]]
    stopped = model.generate(tokens, 12, temperature=0, eos_token_id=eos)[:, 5:].tolist()
    assert stopped[0] == expected[0], "a finished row must continue with EOS only"
    assert stopped[1] == expected[1], "generation should stop once every row has emitted EOS, and not before"


def test_stop_at_eos_without_an_eos_token_is_an_error(model):
    with pytest.raises(ValueError, match="eos_token_id"):
        model.generate(prompts(), 3)


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    tokens = prompts(batch=3, pos=4)
    greedy = model.generate(tokens, 8, temperature=0, stop_at_eos=False)
    for kwargs in (dict(top_k=1), dict(top_p=1e-6)):
        sampled = model.generate(tokens, 8, temperature=1.5, stop_at_eos=False, generator=torch.Generator().manual_seed(0), **kwargs)
        assert sampled.tolist() == greedy.tolist(), f"sampling with {kwargs} should keep only the argmax"


def test_sampling_is_reproducible_with_a_seeded_generator(model):
    tokens = prompts(batch=2, pos=4)
    runs = [model.generate(tokens, 10, stop_at_eos=False, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert runs[0].tolist() == runs[1].tolist()
    assert runs[0].tolist() != runs[2].tolist(), "different seeds gave the same 20 samples; is it sampling at all?"


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(2000, 4)
    generator = torch.Generator().manual_seed(0)
    assert set(sample_next_token(logits, top_k=2, generator=generator).tolist()) == {0, 1}
    # 0.5 < 0.7 so token 1 is needed; 0.5 + 0.3 >= 0.7 so token 2 is not.
    assert set(sample_next_token(logits, top_p=0.7, generator=generator).tolist()) == {0, 1}
    frequencies = torch.bincount(sample_next_token(logits, generator=generator), minlength=4) / 2000
    torch.testing.assert_close(frequencies, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.04, rtol=0)


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(temperature=-0.5), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=1.5), "top_p"),
        (dict(max_new_tokens=100), "n_ctx"),
    ],
)
def test_bad_arguments_are_refused(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.generate(prompts(), stop_at_eos=False, **kwargs)


def test_right_padding_is_refused(model):
    tokens = prompts()
    mask = torch.ones_like(tokens)
    mask[1, -2:] = 0
    with pytest.raises(ValueError, match="left"):
        model.generate(tokens, 3, stop_at_eos=False, attention_mask=mask)


def test_string_prompts_are_left_padded(bpe_tokenizer):
    from conftest import tiny_config

    model = HookedTransformer(tiny_config(), tokenizer=bpe_tokenizer).eval()
    out = model.generate(["Hello world", "The quick brown fox jumps"], 5, temperature=0, stop_at_eos=False)
    alone = model.generate("Hello world", 5, temperature=0, stop_at_eos=False)
    assert out[0, -alone.shape[1]:].tolist() == alone[0].tolist()
    assert isinstance(model.to_string(out[0]), str)
