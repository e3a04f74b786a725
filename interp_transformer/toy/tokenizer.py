"""Word-level Hugging Face tokenizers for the embedded models (real ``tokenizers`` objects, saved with the model)."""

from __future__ import annotations

from typing import Sequence

BOS, PAD, UNK = "<bos>", "<pad>", "<unk>"


def build_word_tokenizer(words: Sequence[str]):
    """A ``PreTrainedTokenizerFast`` whose vocabulary is ``<bos> <pad> <unk>`` followed by ``words``.

    Text is split on whitespace and punctuation, so " Mary" and "Mary" are the same token,
    and decoding joins tokens with spaces.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_list = [BOS, PAD, UNK, *words]
    if len(set(vocab_list)) != len(vocab_list):
        duplicates = sorted({w for w in vocab_list if vocab_list.count(w) > 1})
        raise ValueError(f"duplicate words in the vocabulary: {duplicates}")
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(vocab_list)}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, pad_token=PAD, unk_token=UNK)
