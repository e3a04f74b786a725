"""Turn a corpus into a deterministic stream of fixed-length token sequences.

Accepted corpora:

- a ``[n_sequences pos]`` integer tensor: each row is one sequence;
- an iterable of strings: documents are tokenized in order, joined with the EOS token, and
  cut into ``seq_len``-token sequences (default ``min(128, n_ctx)``), each starting with BOS
  when the model prepends one, as TransformerLens's ``tokenize_and_concatenate`` does; the
  incomplete tail is dropped;
- a Hugging Face ``datasets`` dataset: a ``text`` column goes the string route, an
  ``input_ids`` or ``tokens`` column holds ready-made sequences of equal length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch
from torch import Tensor

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

TOKENIZE_GROUP = 256  # documents tokenized per call: the fast tokenizer batches them in Rust
TOKEN_COLUMNS = ("input_ids", "tokens")
DEFAULT_SEQ_LEN = 128


@dataclass
class TokenStream:
    """Sequences ``[seq_len]`` in corpus order, and how many there are when that is known up front."""

    sequences: Iterator[Tensor]
    seq_len: int
    n_sequences: int | None
    description: dict[str, Any]


def default_seq_len(n_ctx: int) -> int:
    """Tokens per sequence when a text corpus is cut without an explicit ``seq_len``: 128, or less to fit the model."""
    return min(DEFAULT_SEQ_LEN, n_ctx)


def token_stream(corpus: Any, model: "HookedTransformer", seq_len: int | None) -> TokenStream:
    if seq_len is not None and (not isinstance(seq_len, int) or isinstance(seq_len, bool) or not 1 <= seq_len <= model.cfg.n_ctx):
        raise ValueError(f"seq_len must be an int in [1, n_ctx={model.cfg.n_ctx}], got {seq_len!r}")
    if isinstance(corpus, Tensor):
        return _tensor_stream(corpus, model, seq_len)
    if isinstance(corpus, (str, bytes)):
        raise TypeError("the corpus is a single string; pass a list of documents (e.g. [text]) or a token tensor")
    if hasattr(corpus, "column_names"):
        return _dataset_stream(corpus, model, seq_len)
    if isinstance(corpus, Iterable):
        return _text_stream(corpus, model, seq_len or default_seq_len(model.cfg.n_ctx))
    raise TypeError(
        f"the corpus must be a [n_sequences pos] token tensor, an iterable of strings or a datasets.Dataset, "
        f"got {type(corpus).__name__}"
    )


def _tensor_stream(tokens: Tensor, model: "HookedTransformer", seq_len: int | None) -> TokenStream:
    if tokens.is_floating_point() or tokens.dtype == torch.bool or tokens.ndim != 2:
        raise ValueError(f"a token corpus must be an integer tensor [n_sequences pos], got dtype {tokens.dtype} shape {tuple(tokens.shape)}")
    if seq_len is not None and seq_len != tokens.shape[1]:
        raise ValueError(f"the token corpus has sequences of length {tokens.shape[1]}, but seq_len={seq_len}; leave seq_len unset or reshape the tokens")
    if tokens.shape[1] > model.cfg.n_ctx:
        raise ValueError(f"the token corpus has sequences of length {tokens.shape[1]} > n_ctx={model.cfg.n_ctx}")
    _check_ids(tokens, model)
    tokens = tokens.to("cpu", torch.long)
    return TokenStream(iter(tokens), tokens.shape[1], tokens.shape[0], {"kind": "tokens"})


def _dataset_stream(dataset: Any, model: "HookedTransformer", seq_len: int | None) -> TokenStream:
    columns = list(dataset.column_names)
    length = len(dataset) if hasattr(dataset, "__len__") else None
    token_column = next((c for c in TOKEN_COLUMNS if c in columns), None)
    if token_column is not None:
        first = next(iter(dataset), None)
        if first is None:
            raise ValueError("the dataset is empty")
        rows = (row[token_column] for row in dataset)
        seq_len = seq_len or len(first[token_column])
        return TokenStream(_checked_rows(rows, seq_len, model), seq_len, length, {"kind": "dataset", "column": token_column})
    if "text" in columns:
        stream = _text_stream((row["text"] for row in dataset), model, seq_len or default_seq_len(model.cfg.n_ctx))
        stream.description = {"kind": "dataset", "column": "text", **{k: v for k, v in stream.description.items() if k != "kind"}}
        return stream
    raise ValueError(f"the dataset has columns {columns}; it needs a 'text' column or a token column {list(TOKEN_COLUMNS)}")


def _checked_rows(rows: Iterable[Any], seq_len: int, model: "HookedTransformer") -> Iterator[Tensor]:
    for index, row in enumerate(rows):
        tokens = torch.as_tensor(row, dtype=torch.long)
        if tokens.shape != (seq_len,):
            raise ValueError(f"dataset row {index} has {tuple(tokens.shape)} tokens; every row must hold exactly seq_len={seq_len}")
        _check_ids(tokens, model)
        yield tokens


def _text_stream(documents: Iterable[Any], model: "HookedTransformer", seq_len: int) -> TokenStream:
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ValueError("a text corpus needs a tokenizer, but the model has none; pass a token tensor instead or call model.set_tokenizer(...)")
    prepend_bos = model.cfg.default_prepend_bos and tokenizer.bos_token_id is not None
    if prepend_bos and seq_len < 2:  # checked here, not when the lazy chunker starts: before the folder is claimed
        raise ValueError("seq_len must be at least 2 when a BOS token is prepended to each sequence")
    description = {"kind": "text", "prepend_bos": prepend_bos, "eos_separator": tokenizer.eos_token_id}
    return TokenStream(_chunks(documents, tokenizer, seq_len, prepend_bos), seq_len, None, description)


def _chunks(documents: Iterable[Any], tokenizer: Any, seq_len: int, prepend_bos: bool) -> Iterator[Tensor]:
    body = seq_len - 1 if prepend_bos else seq_len
    prefix = [tokenizer.bos_token_id] if prepend_bos else []
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    buffer: list[int] = []
    start = 0
    for group in _groups(documents):
        for ids in tokenizer(group, add_special_tokens=False)["input_ids"]:
            buffer.extend(ids)
            buffer.extend(separator)
            while len(buffer) - start >= body:
                yield torch.tensor(prefix + buffer[start : start + body], dtype=torch.long)
                start += body
            if start > len(buffer) // 2:  # compact now and then: a long document must not cost O(n^2)
                del buffer[:start]
                start = 0


def _groups(documents: Iterable[Any]) -> Iterator[list[str]]:
    group: list[str] = []
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise TypeError(f"document {index} of the corpus is a {type(document).__name__}, not a string")
        group.append(document)
        if len(group) == TOKENIZE_GROUP:
            yield group
            group = []
    if group:
        yield group


def _check_ids(tokens: Tensor, model: "HookedTransformer") -> None:
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= model.cfg.d_vocab):
        raise ValueError(f"token ids must be in [0, d_vocab={model.cfg.d_vocab}), got {int(tokens.min())}..{int(tokens.max())}")
