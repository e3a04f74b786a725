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

    def to(self, device: torch.device | str) -> "Tokenized":
        return Tokenized(self.tokens.to(device), self.attention_mask.to(device))


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
    strings = [input] if isinstance(input, str) else list(input)
    if not strings or not all(isinstance(s, str) for s in strings):
        raise TypeError("input must be a string or a non-empty list of strings")
    side = padding_side or getattr(tokenizer, "padding_side", "right")
    if side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be one of {PADDING_SIDES}, got {side!r}")
    prefix = [_bos_id(tokenizer)] if prepend_bos else []
    rows = [prefix + list(ids) for ids in tokenizer(strings, add_special_tokens=False)["input_ids"]]
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
    return Tokenized(tokens, mask)


def _bos_id(tokenizer: "PreTrainedTokenizerBase") -> int:
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("this tokenizer has no BOS token; pass prepend_bos=False")
    return bos


def to_str_tokens(tokenizer: "PreTrainedTokenizerBase", tokens: Tensor | Sequence[int]) -> list[str] | list[list[str]]:
    """Each token id decoded on its own: ``[pos]`` gives a list, ``[batch pos]`` a list of lists."""
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 2:
        return [to_str_tokens(tokenizer, row) for row in tokens]
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be [pos] or [batch pos], got shape {tuple(tokens.shape)}")
    return [tokenizer.decode([token], clean_up_tokenization_spaces=False) for token in tokens.tolist()]


def to_string(tokenizer: "PreTrainedTokenizerBase", tokens: Tensor | Sequence[int]) -> str | list[str]:
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 2:
        return [to_string(tokenizer, row) for row in tokens]
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be [pos] or [batch pos], got shape {tuple(tokens.shape)}")
    return tokenizer.decode(tokens.tolist(), clean_up_tokenization_spaces=False)


def to_single_token(tokenizer: "PreTrainedTokenizerBase", string: str) -> int:
    ids = tokenizer(string, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{string!r} is {len(ids)} tokens, not one: {tokenizer.convert_ids_to_tokens(ids)}")
    return ids[0]


def get_token_position(token_id: int, tokens: Tensor, mode: Literal["first", "last"] = "first") -> int:
    """Position of ``token_id`` in one prompt's tokens (``[pos]`` or ``[1 pos]``)."""
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
