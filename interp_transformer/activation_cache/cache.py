"""ActivationCache: the activations of one forward pass, looked up by hook name or shorthand.

The residual-stream analyses (``accumulated_resid``, ``decompose_resid``, ``stack_head_results``
...) live in ``analysis.py`` and are mixed in; saving and loading live in ``cache_io.py``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import Tensor

from interp_transformer import names, slicing
from interp_transformer.activation_cache.analysis import ResidualStreamAnalyses
from interp_transformer.config import TransformerConfig

if TYPE_CHECKING:
    import pandas as pd

    from interp_transformer.model import HookedTransformer

logger = logging.getLogger(__name__)


class ActivationCache(ResidualStreamAnalyses, Mapping):
    """Hook name -> activation, with TransformerLens's shorthand keys.

    ``cache["blocks.0.attn.hook_pattern"]``, ``cache["pattern", 0]``, ``cache["resid_pre", -1]``
    (negative layers count from the end), ``cache["scale", 3, "ln1"]``, ``cache["q", 1, "attn"]``,
    ``cache["embed"]`` and ``cache["pattern0"]`` all work. ``model`` supplies the weights the
    analyses need; a cache loaded from disk without a model still has ``cfg`` and every lookup.
    """

    def __init__(
        self,
        cache_dict: dict[str, Tensor],
        model: "HookedTransformer | None",
        has_batch_dim: bool = True,
        cfg: TransformerConfig | None = None,
    ) -> None:
        if model is None and cfg is None:
            raise ValueError("an ActivationCache needs the model it came from, or at least its TransformerConfig (cfg=...)")
        self.cache_dict = dict(cache_dict)
        self.model = model
        self.cfg: TransformerConfig = model.cfg if model is not None else cfg
        self.has_batch_dim = has_batch_dim

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, key: Any) -> Tensor:
        if isinstance(key, str) and key in self.cache_dict:
            return self.cache_dict[key]
        name = names.act_name_from_key(key, self.cfg.n_layers)
        if name in self.cache_dict:
            return self.cache_dict[name]
        raise KeyError(self._missing_message(key, name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def __len__(self) -> int:
        return len(self.cache_dict)

    def keys(self):
        return self.cache_dict.keys()

    def values(self):
        return self.cache_dict.values()

    def items(self):
        return self.cache_dict.items()

    # Mapping compares by value, which for tensors is ambiguous: caches compare by identity.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except (KeyError, TypeError, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    def _missing_message(self, key: Any, name: str) -> str:
        shown = repr(key) if name == key else f"{key!r} (= {name!r})"
        close = difflib.get_close_matches(name, self.cache_dict, n=5, cutoff=0.6)
        hint = f"closest cached names: {close}" if close else f"the cache holds {len(self)} names, e.g. {list(self.cache_dict)[:4]}"
        return f"{shown} is not in this cache; {hint}. If it is a real hook point, widen run_with_cache's names_filter"

    # ------------------------------------------------------------- transforms
    def to(self, device: torch.device | str) -> "ActivationCache":
        """Move every activation to ``device`` (in place; returns self, as TransformerLens does)."""
        self.cache_dict = {name: value.to(device) for name, value in self.cache_dict.items()}
        return self

    def remove_batch_dim(self) -> "ActivationCache":
        """Drop the batch axis of a one-prompt cache (in place; returns self)."""
        if not self.has_batch_dim:
            logger.warning("Tried removing the batch dimension after already having removed it.")
            return self
        sizes = {value.shape[0] for value in self.cache_dict.values() if value.ndim > 0}
        if sizes - {1}:
            raise ValueError(f"cannot remove the batch dimension: the batch size is {sorted(sizes - {1})}, not 1")
        self.cache_dict = {name: value[0] if value.ndim > 0 else value for name, value in self.cache_dict.items()}
        self.has_batch_dim = False
        return self

    def apply_slice_to_batch_dim(self, batch_slice: slicing.SliceInput) -> "ActivationCache":
        """A new cache with ``batch_slice`` applied to every activation's batch axis (an int drops it)."""
        if not self.has_batch_dim:
            raise ValueError("this cache has no batch dimension to slice (remove_batch_dim was applied)")
        sliced = {name: slicing.apply_slice(value, batch_slice, 0) for name, value in self.cache_dict.items()}
        return ActivationCache(sliced, self.model, has_batch_dim=slicing.keeps_axis(batch_slice), cfg=self.cfg)

    def toggle_autodiff(self, mode: bool = False) -> None:
        """``torch.set_grad_enabled(mode)``: global state, as in TransformerLens; prefer ``torch.inference_mode()``."""
        logger.warning("Changed the global state, set autodiff to %s", mode)
        torch.set_grad_enabled(mode)

    # ------------------------------------------------------------ inspection
    def summary(self) -> "pd.DataFrame":
        """One row per activation: name, shape, dtype, device and bytes."""
        rows = [
            {
                "name": name,
                "shape": tuple(value.shape),
                "dtype": str(value.dtype).removeprefix("torch."),
                "device": str(value.device),
                "bytes": value.numel() * value.element_size(),
            }
            for name, value in self.cache_dict.items()
        ]
        import pandas as pd  # imported on use: pandas costs a third of a second at package import

        return pd.DataFrame(rows, columns=["name", "shape", "dtype", "device", "bytes"])

    def nbytes(self) -> int:
        """Bytes of memory the activations hold (shared storage counted once)."""
        storages = {}
        for value in self.cache_dict.values():
            storage = value.untyped_storage()
            storages[(str(value.device), storage.data_ptr())] = storage.nbytes()
        return sum(storages.values())

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``PATH.safetensors`` plus a ``PATH.json`` sidecar (names, shapes, config and its fingerprint)."""
        from interp_transformer.activation_cache.cache_io import save_cache

        return save_cache(self, path)

    @classmethod
    def load(
        cls, path: str | Path, model: "HookedTransformer | None" = None, device: torch.device | str | None = None
    ) -> "ActivationCache":
        """Read a cache written by ``save``. With ``model``, its config must be the one the cache was made with."""
        from interp_transformer.activation_cache.cache_io import load_cache

        return load_cache(path, model=model, device=device)
