"""ShuffledActivations: a bounded, seeded, resumable shuffle of one hook's rows from an activation store."""

from __future__ import annotations

import itertools

import pytest
import torch
from training_helpers import RESID, cache_induction_store

from interp_transformer.sae.activation_buffer import ShuffledActivations
from interp_transformer.store import ActivationStore


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ActivationStore:
    path = cache_induction_store(tmp_path_factory.mktemp("store") / "s", hooks=[RESID, "blocks.0.attn.hook_z", "blocks.0.attn.hook_pattern"], n_sequences=40, seq_len=8, sequences_per_shard=8)
    return ActivationStore(path)


def _all_rows(store: ActivationStore, hook: str) -> torch.Tensor:
    """The store read densely, in order, one row per position (independent of the buffer's reading)."""
    values = torch.stack([store[i][hook] for i in range(len(store))])
    return values.reshape(len(store) * values.shape[1], -1)


def _sorted_rows(rows: torch.Tensor) -> torch.Tensor:
    """Rows in a canonical order (lexicographic over their values), to compare two collections as multisets."""
    order = sorted(range(rows.shape[0]), key=lambda i: rows[i].tolist())
    return rows[order]


def test_one_epoch_is_a_shuffle_of_every_row_and_the_buffer_never_exceeds_its_size(store):
    stream = ShuffledActivations(store, RESID, buffer_size=50, seed=0)
    dense = _all_rows(store, RESID)
    n_rows = dense.shape[0]  # 40 sequences x 8 positions
    epoch = torch.cat(list(itertools.islice(stream.batches(batch_size=16), n_rows // 16)))
    assert stream.max_rows_held <= 50, f"the buffer held {stream.max_rows_held} rows, more than buffer_size=50: memory is not bounded"
    assert stream.max_rows_held == 48, "a buffer holds as many whole sequences as fit (6 x 8 rows)"
    assert torch.equal(_sorted_rows(epoch), _sorted_rows(dense)), "one epoch must yield every stored row exactly once"
    assert not torch.equal(epoch, dense), "rows came out in store order: the buffer does not shuffle"
    sequences_of_first_batch = {int(torch.nonzero((dense == row).all(-1))[-1]) // 8 for row in epoch[:16]}
    assert len(sequences_of_first_batch) >= 3 and max(sequences_of_first_batch) - min(sequences_of_first_batch) > 6, (
        f"the first batch draws only on sequences {sequences_of_first_batch}: the shuffle does not mix across the store"
    )


def test_the_order_follows_the_seed_and_resumes_at_any_row(store):
    def take(seed, start_row, n_batches):
        return list(itertools.islice(ShuffledActivations(store, RESID, 50, seed).batches(16, start_row=start_row), n_batches))

    run = take(0, 0, 50)  # 800 rows: two and a half epochs
    assert all(torch.equal(a, b) for a, b in zip(run, take(0, 0, 50))), "the same seed must give the same stream"
    assert not torch.equal(run[0], take(1, 0, 1)[0]), "another seed must give another order"
    for step in (3, 19, 20, 31):  # inside a buffer, at an epoch boundary (320 rows = step 20), in a later epoch
        resumed = take(0, step * 16, 50 - step)
        assert all(torch.equal(a, b) for a, b in zip(run[step:], resumed)), f"the stream restarted at step {step} differs from the uninterrupted one"
    first, second = torch.cat(run[:20]), torch.cat(run[20:40])
    assert torch.equal(_sorted_rows(first), _sorted_rows(second)) and not torch.equal(first, second), "each epoch must hold every row once, in a fresh order"


def test_head_hooks_flatten_heads_and_patterns_are_refused(store):
    stream = ShuffledActivations(store, "blocks.0.attn.hook_z", 64, seed=0)
    n_heads, d_head = store.cfg.n_heads, store.cfg.d_head
    assert stream.d_in == n_heads * d_head, "hook_z rows are one [head_index * d_head] vector per position, as SAELens reads them"
    batch = next(stream.batches(8))
    dense = _all_rows(store, "blocks.0.attn.hook_z")
    assert all(bool((dense == row).all(-1).any()) for row in batch), "every hook_z row must be a stored position's heads, flattened"
    with pytest.raises(ValueError, match=r"hook_pattern.*not \[pos features\]"):
        ShuffledActivations(store, "blocks.0.attn.hook_pattern", 64, seed=0)


def test_bad_hook_and_buffer_size_name_what_to_change(store):
    with pytest.raises(KeyError, match=r"no activations for hook 'blocks.1.hook_resid_post'.*holds \['blocks.0.attn.hook_pattern', 'blocks.0.attn.hook_z', 'blocks.1.hook_resid_pre'\]"):
        ShuffledActivations(store, "blocks.1.hook_resid_post", 64, seed=0)
    with pytest.raises(ValueError, match="buffer_size 4 must be an int of at least one sequence's rows \\(8"):
        ShuffledActivations(store, RESID, 4, seed=0)
