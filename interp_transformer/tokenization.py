"""Strings to tokens and back, with BOS handling, left/right padding, truncation and attention masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PADDING_SIDES = ("left", "right")


@dataclass(frozen=True)
class Tokenized:
    """Token ids and their attention mask (1 = real token, 0 = padding), both ``[batch pos]``."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    # The longest row's length before truncation, when truncation cut something (None otherwise).
    untruncated_length: int | None = None

    def to(self, device: torch.device | str) -> "Tokenized":
        return Tokenized(self.tokens.to(device), self.attention_mask.to(device), self.untruncated_length)


def prepare_tokenizer(tokenizer: "PreTrainedTokenizerBase") -> "PreTrainedTokenizerBase":
    """Give a tokenizer without a pad token one (EOS, else BOS), as batching needs it. Mutates and returns it."""
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise TypeError(f"expected a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.bos_token
        if fallback is not None:
            tokenizer.pad_token = fallback
    return tokenizer


def tokenize(
    tokenizer: "PreTrainedTokenizerBase",
    input: str | Sequence[str],
    prepend_bos: bool = True,
    padding_side: Literal["left", "right"] | None = None,
    max_length: int | None = None,
) -> Tokenized:
    """Tokenize one string or a batch, padding to the longest and truncating to ``max_length``.

    BOS is prepended as an id (not as text), so the result does not depend on whether the
    tokenizer would add special tokens by itself.
    """
    if isinstance(input, (list, tuple)) and not input:
        raise ValueError("the list of strings is empty: pass at least one string")
    if not isinstance(input, (str, list, tuple)):
        raise TypeError(f"input must be a string or a list of strings, got {type(input).__name__}")
    strings = [input] if isinstance(input, str) else list(input)
    not_strings = [type(s).__name__ for s in strings if not isinstance(s, str)]
    if not_strings:
        raise TypeError(f"input must be a string or a list of strings; the list holds {sorted(set(not_strings))}")
    if not isinstance(prepend_bos, bool):
        raise TypeError(f"prepend_bos must be True, False or None, got {prepend_bos!r}")
    side = padding_side or getattr(tokenizer, "padding_side", "right")
    if side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be one of {PADDING_SIDES}, got {side!r}")
    prefix = [_bos_id(tokenizer)] if prepend_bos else []
    rows = [prefix + list(ids) for ids in tokenizer(strings, add_special_tokens=False)["input_ids"]]
    longest = max(len(row) for row in rows)
    if max_length is not None:
        rows = [row[:max_length] for row in rows]
    if any(len(row) == 0 for row in rows):
        raise ValueError("an input string produced no tokens; pass prepend_bos=True or a non-empty string")
    width = max(len(row) for row in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        tokens[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return Tokenized(tokens, mask, longest if longest > width else None)


def _bos_id(tokenizer: "PreTrainedTokenizerBase") -> int:
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("this tokenizer has no BOS token; pass prepend_bos=False")
    return bos


def to_str_tokens(tokenizer: "PreTrainedTokenizerBase", tokens: Tensor | Sequence[int]) -> list[str] | list[list[str]]:
    """Each token id decoded on its own.

    As in TransformerLens, ``[pos]``, ``[1 pos]`` and a 0-d tensor give a flat list; a batch
    ``[batch pos]`` with ``batch > 1`` gives one list per row.
    """
    tokens = checked_token_ids(tokenizer, tokens)
    if tokens.ndim == 0:
        tokens = tokens[None]
    if tokens.ndim == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim == 2:
        return [_decode_each(tokenizer, row) for row in tokens]
    return _decode_each(tokenizer, tokens)


def _decode_each(tokenizer: "PreTrainedTokenizerBase", tokens: Tensor) -> list[str]:
    return [tokenizer.decode([token], clean_up_tokenization_spaces=False) for token in tokens.tolist()]


def to_string(tokenizer: "PreTrainedTokenizerBase", tokens: Tensor | Sequence[int]) -> str | list[str]:
    tokens = checked_token_ids(tokenizer, tokens)
    if tokens.ndim == 0:
        tokens = tokens[None]
    if tokens.ndim == 2:
        return [tokenizer.decode(row.tolist(), clean_up_tokenization_spaces=False) for row in tokens]
    return tokenizer.decode(tokens.tolist(), clean_up_tokenization_spaces=False)


def checked_token_ids(tokenizer: "PreTrainedTokenizerBase", tokens: Tensor | Sequence[int]) -> Tensor:
    """Token ids as a tensor of at most 2 axes, each id one the tokenizer knows (else a clear error).

    Hugging Face decodes an id past the vocabulary as "" and overflows on a negative one.
    """
    try:
        tokens = torch.as_tensor(tokens)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"tokens must be a tensor or a (nested) list of int token ids, got {type(tokens).__name__}: {error}") from None
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim > 2:
        raise ValueError(f"tokens must be [pos] or [batch pos], got shape {tuple(tokens.shape)}")
    if tokens.numel():
        low, high, size = int(tokens.min()), int(tokens.max()), len(tokenizer)
        if low < 0 or high >= size:
            raise ValueError(f"token id {low if low < 0 else high} is not in the tokenizer's vocabulary [0, {size})")
    return tokens


def to_single_token(tokenizer: "PreTrainedTokenizerBase", string: str) -> int:
    if not isinstance(string, str):
        raise TypeError(f"to_single_token takes a string, got {type(string).__name__} {string!r}")
    ids = tokenizer(string, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{string!r} is {len(ids)} tokens, not one: {tokenizer.convert_ids_to_tokens(ids)}")
    return ids[0]


def get_token_position(token_id: int, tokens: Tensor, mode: Literal["first", "last"] = "first") -> int:
    """Position of ``token_id`` in one prompt's tokens (``[pos]`` or ``[1 pos]``)."""
    if not isinstance(tokens, Tensor):
        raise TypeError(f"get_token_position looks in one prompt: a string or its tokens [pos], got {type(tokens).__name__}")
    if tokens.ndim == 2:
        if tokens.shape[0] != 1:
            raise ValueError(f"get_token_position takes one prompt, got a batch of {tokens.shape[0]}")
        tokens = tokens[0]
    if mode not in ("first", "last"):
        raise ValueError(f"mode must be 'first' or 'last', got {mode!r}")
    positions = (tokens == token_id).nonzero().flatten()
    if positions.numel() == 0:
        raise ValueError(f"token {token_id} does not occur in the input")
    return int(positions[0] if mode == "first" else positions[-1])
