"""One hook's activations from an activation store, as a shuffled stream of ``[batch d_in]`` training rows.

Memory is bounded by ``buffer_size`` rows (plus the batch being assembled): the store is read
in chunks of consecutive sequences, taken in a seeded random order, into a buffer that is
shuffled and handed out whole before it is filled again. Every position of every sequence is
one row; features are everything after the position axis, flattened (``hook_z``'s
``[head_index d_head]`` becomes one ``d_in = n_heads * d_head`` vector, as SAELens does).

The stream is a pure function of ``(store, hook, buffer_size, seed)``: row ``r`` of epoch ``e``
is the same whenever it is asked for. So ``batches(start_row=...)`` picks up a stream at any
point without saving the buffer (how training resumes), and every process of a ``torchrun``
job sees the same global batches.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterator

import torch
from torch import Tensor

from interp_transformer.caching import position_axis
from interp_transformer.store import ActivationStore

CHUNKS_PER_BUFFER = 16  # how many separate places in the store each buffer draws from (mixing vs. read size)


def hook_row_layout(store: ActivationStore, hook: str) -> tuple[int, int]:
    """``(rows per sequence, d_in)`` of ``hook`` in ``store``; a clear error for a hook an SAE cannot read."""
    stored = store.manifest["settings"]["hooks"]
    if hook not in stored:
        raise KeyError(f"the store at {store.path} has no activations for hook {hook!r}; it holds {sorted(stored)}: pass one of those, or cache this hook first")
    shape = list(stored[hook]["shape"])
    feature_axes = -position_axis(hook) - 1  # [pos d_model] -> 1 feature axis; [pos head_index d_head] -> 2
    if len(shape) == feature_axes + 1:
        return shape[0], math.prod(shape[1:])
    if len(shape) == feature_axes:  # an int pos_slice kept one position per sequence
        return 1, math.prod(shape)
    raise ValueError(
        f"hook {hook!r} stores {shape} per sequence, not [pos features]: a sparse dictionary reads a vector per "
        "token (the residual stream, hook_attn_out, hook_mlp_out, mlp.hook_post, attn.hook_z, ...); choose such a hook"
    )


class ShuffledActivations:
    """Shuffled ``[rows d_in]`` batches of ``hook`` from ``store``, repeating over epochs with fresh orders.

    ``max_rows_held`` records the most rows the buffer ever held (never more than ``buffer_size``).
    """

    def __init__(self, store: ActivationStore, hook: str, buffer_size: int, seed: int, dtype: torch.dtype = torch.float32) -> None:
        self.rows_per_sequence, self.d_in = hook_row_layout(store, hook)
        if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or buffer_size < self.rows_per_sequence:
            raise ValueError(
                f"buffer_size {buffer_size!r} must be an int of at least one sequence's rows ({self.rows_per_sequence} "
                f"for {hook!r} in {store.path}); a larger buffer mixes better"
            )
        self.store = store if store.hooks == [hook] else ActivationStore(store.path, hooks=[hook])
        self.hook, self.seed, self.dtype = hook, seed, dtype
        self.n_sequences = len(store)
        self.sequences_per_buffer = min(self.n_sequences, buffer_size // self.rows_per_sequence)
        self.sequences_per_chunk = max(1, self.sequences_per_buffer // CHUNKS_PER_BUFFER)
        self.rows_per_epoch = self.n_sequences * self.rows_per_sequence
        self.max_rows_held = 0

    def batches(self, batch_size: int, start_row: int = 0) -> Iterator[Tensor]:
        """Consecutive ``[batch_size d_in]`` slices of the endless stream, starting at row ``start_row``."""
        rows_per_buffer = self.sequences_per_buffer * self.rows_per_sequence
        epoch, in_epoch = divmod(start_row, self.rows_per_epoch)
        buffer_index, offset = divmod(in_epoch, rows_per_buffer)
        pending: list[Tensor] = []
        pending_rows = 0
        while True:
            plan = self._buffer_plan(epoch)
            for index in range(buffer_index, len(plan)):
                buffer = self._fill(plan[index], epoch, index)
                while offset < buffer.shape[0]:
                    take = min(batch_size - pending_rows, buffer.shape[0] - offset)
                    pending.append(buffer[offset : offset + take])
                    pending_rows, offset = pending_rows + take, offset + take
                    if pending_rows == batch_size:
                        yield pending[0] if len(pending) == 1 else torch.cat(pending)
                        pending, pending_rows = [], 0
                offset = 0
                del buffer
            epoch, buffer_index = epoch + 1, 0

    def _buffer_plan(self, epoch: int) -> list[list[int]]:
        """Each buffer's chunk starts for one epoch: the chunks in a random order, dealt out buffer by buffer."""
        starts = torch.arange(0, self.n_sequences, self.sequences_per_chunk)
        order = starts[torch.randperm(len(starts), generator=_generator(self.seed, epoch, -1))].tolist()
        plan, current, held = [], [], 0
        for start in order:
            size = min(self.sequences_per_chunk, self.n_sequences - start)
            if held + size > self.sequences_per_buffer and current:
                plan.append(current)
                current, held = [], 0
            current.append(start)
            held += size
        plan.append(current)
        return plan

    def _fill(self, chunk_starts: list[int], epoch: int, index: int) -> Tensor:
        """Read the chunks straight into shuffled places (a scatter, so the buffer is never copied whole)."""
        n_sequences = sum(min(self.sequences_per_chunk, self.n_sequences - start) for start in chunk_starts)
        buffer = torch.empty((n_sequences * self.rows_per_sequence, self.d_in), dtype=self.dtype)
        self.max_rows_held = max(self.max_rows_held, buffer.shape[0])
        destination = torch.randperm(buffer.shape[0], generator=_generator(self.seed, epoch, index))
        row = 0
        for start in chunk_starts:
            stop = min(start + self.sequences_per_chunk, self.n_sequences)
            values = self.store.rows(start, stop)[self.hook].reshape(-1, self.d_in)
            buffer[destination[row : row + values.shape[0]]] = values.to(self.dtype)
            row += values.shape[0]
        return buffer


def _generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """Independent, reproducible randomness for each (epoch, buffer): nothing to save when training resumes."""
    digest = hashlib.sha256(f"activation-buffer/{seed}/{epoch}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
