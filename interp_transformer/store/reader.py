"""``ActivationStore``: a finished store read back lazily, as a torch ``Dataset`` of sequences.

Shards are memory-mapped (safetensors ``safe_open``) and only the rows asked for are read, so
opening a store of any size is instant and costs no memory. Items are dicts: one tensor per
hook plus ``"tokens"``. Open handles are per process and dropped when pickled, so the store
works with a multi-worker ``DataLoader``.

Nothing wrong is ever returned (see ``verification.py``): the manifest is checked on open, and
each shard is hashed and its recorded index checked the first time a process reads it.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from interp_transformer.cache_io import check_same_config
from interp_transformer.config import TransformerConfig
from interp_transformer.store import layout
from interp_transformer.store.verification import check_manifest, open_verified_shard

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


class ActivationStore(Dataset):
    """Sequences of a store written by ``cache_dataset``: ``store[i] -> {hook: [...], "tokens": [seq_len]}``.

    ``model``, when given, must have the config the store was written with. ``hooks`` limits
    what is read to some of the stored hooks.
    """

    def __init__(self, path: str | Path, model: "HookedTransformer | None" = None, hooks: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        manifest_path = self.path / layout.MANIFEST_FILE
        if not manifest_path.is_file():
            hint = " (the run that writes it has not finished: rerun it with resume=True / --resume)" if (self.path / layout.SETTINGS_FILE).exists() else ""
            raise FileNotFoundError(f"no activation store at {self.path}: {manifest_path} does not exist{hint}")
        self.manifest = layout.read_json(manifest_path)
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != layout.FORMAT or self.manifest.get("format_version") != layout.FORMAT_VERSION:
            found = (self.manifest.get("format"), self.manifest.get("format_version")) if isinstance(self.manifest, dict) else type(self.manifest).__name__
            raise ValueError(
                f"{manifest_path} is not an activation store this version reads (format {found!r}; expected "
                f"{(layout.FORMAT, layout.FORMAT_VERSION)!r})"
            )
        check_manifest(self.manifest, manifest_path)
        settings = self.manifest["settings"]
        self.cfg = TransformerConfig.from_dict(settings["model"]["config"])
        if model is not None:
            check_same_config(model.cfg, self.cfg, settings["model"]["fingerprint"], f"the activation store at {self.path}")
        stored = list(settings["hooks"])
        self.hooks = stored if hooks is None else list(hooks)
        unknown = [name for name in self.hooks if name not in stored]
        if unknown:
            raise KeyError(f"hooks {unknown} are not in the store at {self.path}; it holds {stored}")
        self.shards = self.manifest["shards"]
        self._starts = [shard["first_sequence"] for shard in self.shards]
        self._check_files()
        self._handles: dict[int, Any] = {}

    # ----------------------------------------------------------------- Dataset
    def __len__(self) -> int:
        return self.manifest["n_sequences"]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"store indices are ints, got {type(index).__name__}; use rows(start, stop) for ranges")
        if not -len(self) <= index < len(self):
            raise IndexError(f"sequence {index} is out of range for a store of {len(self)} sequences")
        index %= len(self)
        return {name: value[0] for name, value in self.rows(index, index + 1).items()}

    def rows(self, start: int, stop: int) -> dict[str, Tensor]:
        """Sequences ``start:stop`` as batched tensors (may span shards)."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"rows({start}, {stop}) is out of range for a store of {len(self)} sequences")
        pieces: dict[str, list[Tensor]] = {name: [] for name in self.hooks + [layout.TOKENS_KEY]}
        position = start
        while position < stop:
            shard = bisect.bisect_right(self._starts, position) - 1
            first = self._starts[shard]
            end = min(stop, first + self.shards[shard]["n_sequences"])
            assert end > position, "check_manifest guarantees contiguous shards, so every step advances"
            handle = self._handle(shard)
            for name in pieces:
                pieces[name].append(handle.get_slice(name)[position - first : end - first])
            position = end
        return {name: parts[0] if len(parts) == 1 else torch.cat(parts) for name, parts in pieces.items()}

    def iter_batches(self, batch_size: int, drop_last: bool = False) -> Iterator[dict[str, Tensor]]:
        """Consecutive batches ``{hook: [batch ...], "tokens": [batch seq_len]}`` in store order."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            if drop_last and stop - start < batch_size:
                return
            yield self.rows(start, stop)

    # --------------------------------------------------------------- integrity
    def verify(self) -> None:
        """Check every shard now (sha256 and recorded index; reads the whole store) instead of on first read."""
        for shard in range(len(self.shards)):
            self._handle(shard)

    def _check_files(self) -> None:
        for shard in self.shards:
            path = self.path / shard["file"]
            if not path.is_file():
                raise FileNotFoundError(f"the store at {self.path} is missing {shard['file']}, listed in its manifest")
            if path.stat().st_size != shard["bytes"]:
                raise ValueError(f"{path} has {path.stat().st_size} bytes but the manifest records {shard['bytes']}: it is truncated or was overwritten")

    def _handle(self, shard: int) -> Any:
        if shard not in self._handles:  # the first read of this shard in this process: hash it once
            self._handles[shard] = open_verified_shard(self.path, shard, self.manifest)
        return self._handles[shard]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}  # memory maps do not cross processes: each DataLoader worker opens its own
        return state

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.path)!r}: {len(self)} sequences, {len(self.shards)} shards, hooks {self.hooks})"
