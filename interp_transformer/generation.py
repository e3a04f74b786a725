"""Sampling text from a HookedTransformer, one forward per new token, with a key/value cache.

Hooks stay active throughout: every step is an ordinary forward pass, so a hook on
``blocks.0.attn.hook_z`` fires once for the prompt and once per generated token (with the
cache, the later calls see only the new position, ``pos = 1``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_transformer.components.kv_cache import KeyValueCache

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


@torch.no_grad()
def generate(
    model: "HookedTransformer",
    input: str | Sequence[str] | Int[Tensor, "batch pos"],
    max_new_tokens: int = 10,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_at_eos: bool = True,
    use_past_kv_cache: bool = True,
    eos_token_id: int | None = None,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    prepend_bos: bool | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch pos"]:
    """Prompt tokens followed by up to ``max_new_tokens`` sampled tokens, ``[batch prompt_pos + new]``.

    ``input`` is a string, a list of strings (left-padded for you) or token ids ``[batch pos]``
    with an optional left-padding ``attention_mask``. ``temperature=0`` is greedy decoding;
    otherwise logits are divided by ``temperature``, restricted to the ``top_k`` most likely
    tokens and to the smallest set whose probability reaches ``top_p``, then sampled (pass a
    seeded ``generator`` for reproducible samples). With ``stop_at_eos`` a sequence that emits
    EOS is filled with EOS from then on and generation ends once every sequence has; the
    result may then be shorter than ``max_new_tokens``. Decode with ``model.to_string``.

    ``use_past_kv_cache=False`` recomputes the whole sequence every step: slower, same tokens.
    """
    _check_sampling_args(max_new_tokens, temperature, top_k, top_p)
    tokens, attention_mask = _prompt_tokens(model, input, attention_mask, prepend_bos)
    eos = _eos_token_id(model, eos_token_id) if stop_at_eos else None
    batch, prompt_len = tokens.shape
    if prompt_len + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(
            f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} exceeds the model's context "
            f"n_ctx={model.cfg.n_ctx}; shorten the prompt or ask for fewer tokens"
        )
    cache = KeyValueCache.empty(model.cfg, batch, model.device) if use_past_kv_cache else None
    finished = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
    sequence, step_input, step_mask = tokens, tokens, attention_mask
    for _ in range(max_new_tokens):
        if cache is not None:
            logits = model(step_input, attention_mask=step_mask, past_kv_cache=cache)
        else:
            logits = model(sequence, attention_mask=attention_mask)
        next_token = sample_next_token(logits[:, -1], temperature, top_k, top_p, generator)
        if eos is not None:
            next_token = next_token.masked_fill(finished, eos)
            finished |= next_token == eos
        sequence = torch.cat([sequence, next_token[:, None]], dim=1)
        step_input, step_mask = next_token[:, None], None  # new tokens are never padding
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        if eos is not None and bool(finished.all()):
            break
    return sequence


def sample_next_token(
    logits: Float[Tensor, "batch d_vocab"],
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch"]:
    """One token per row: the argmax when ``temperature == 0``, else a sample from the filtered softmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the more likely ones already reach top_p; the most likely is always kept.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


def _prompt_tokens(
    model: "HookedTransformer", input, attention_mask: Tensor | None, prepend_bos: bool | None
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"] | None]:
    if isinstance(input, (list, tuple)) and not input:
        raise ValueError("the list of strings is empty: pass at least one prompt")
    if isinstance(input, str) or (isinstance(input, (list, tuple)) and isinstance(input[0], str)):
        if attention_mask is not None:
            raise ValueError("attention_mask is built from the strings; pass it only with token ids")
        tokenized = model.tokenize(input, prepend_bos=prepend_bos, padding_side="left")
        mask = tokenized.attention_mask
        return tokenized.tokens, (None if bool(mask.all()) else mask)
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a string, a list of strings or [batch pos] token ids, got {type(input).__name__}")
    tokens = model._check_tokens(input)
    if tokens.shape[1] == 0:
        raise ValueError("the prompt is empty: generation needs at least one token per sequence")
    mask = model._check_attention_mask(attention_mask, tokens.shape)
    if mask is not None and bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ValueError(
            "attention_mask has padding after a real token (right padding); generation appends to the end of "
            "each row, so pad prompts on the left (model.to_tokens(..., padding_side='left'))"
        )
    return tokens, mask


def _eos_token_id(model: "HookedTransformer", eos_token_id: int | None) -> int:
    if eos_token_id is not None:
        if not _is_int(eos_token_id) or not 0 <= eos_token_id < model.cfg.d_vocab:
            # An id the model can never emit would make stop_at_eos silently do nothing.
            raise ValueError(f"eos_token_id must be a token id in [0, d_vocab={model.cfg.d_vocab}), got {eos_token_id!r}")
        return eos_token_id
    if model.tokenizer is not None and model.tokenizer.eos_token_id is not None:
        return model.tokenizer.eos_token_id
    raise ValueError("stop_at_eos=True needs an EOS token: pass eos_token_id=..., attach a tokenizer, or pass stop_at_eos=False")


def _check_sampling_args(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k <= 0):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and (not _is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True would pass as 1


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
