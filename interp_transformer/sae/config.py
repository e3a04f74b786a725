"""SAEConfig: the frozen description of a sparse dictionary (SAE or transcoder), validation only.

Field names follow SAELens so a ``cfg.json`` maps onto them one to one. ``architecture`` is
``"standard"`` (ReLU), ``"topk"``, ``"jumprelu"`` or ``"batchtopk"``; ``k`` is the number of
active features for the TopK variants (per row for topk, on average per row for batchtopk).
``hook_name`` is where the dictionary reads; a transcoder also names ``hook_name_out`` (where
it writes) and ``d_out`` (that hook's width). ``reshape_activations="hook_z"`` (SAELens) reads a
``[... head_index d_head]`` activation flattened to ``d_in = n_heads * d_head``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

ARCHITECTURES = ("standard", "topk", "jumprelu", "batchtopk")
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_DTYPE_NAMES = {value: key for key, value in DTYPES.items()}


def dtype_from_name(name: "str | torch.dtype") -> torch.dtype:
    """``"float32"``, ``"torch.float32"`` or a torch dtype -> the torch dtype, or a ValueError naming the valid ones."""
    if isinstance(name, torch.dtype):
        if name not in _DTYPE_NAMES:
            raise ValueError(f"dtype {name} is not supported for a dictionary; use one of {list(DTYPES)}")
        return name
    if isinstance(name, str) and name.removeprefix("torch.") in DTYPES:
        return DTYPES[name.removeprefix("torch.")]
    raise ValueError(f"dtype {name!r} is not supported for a dictionary; use one of {list(DTYPES)}")


@dataclass(frozen=True)
class SAEConfig:
    """Shape and behaviour of a SparseAutoencoder or Transcoder (SAELens field names)."""

    d_in: int
    d_sae: int
    architecture: str = "standard"
    k: int | None = None
    apply_b_dec_to_input: bool = False
    normalize_decoder: bool = False
    hook_name: str | None = None
    hook_name_out: str | None = None
    d_out: int | None = None
    dtype: torch.dtype = torch.float32
    model_name: str | None = None
    reshape_activations: str = "none"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae"):
            _check_positive_int(name, getattr(self, name))
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture {self.architecture!r} is not supported; use one of {list(ARCHITECTURES)}"
            )
        if self.architecture in ("topk", "batchtopk"):
            if self.k is None:
                raise ValueError(f"architecture {self.architecture!r} needs k (the number of active features); pass k=...")
            _check_positive_int("k", self.k)
            if self.k > self.d_sae:
                raise ValueError(f"k={self.k} is larger than d_sae={self.d_sae}; use k <= d_sae")
        elif self.k is not None:
            raise ValueError(
                f"k={self.k} only applies to the 'topk' and 'batchtopk' architectures, not {self.architecture!r}; "
                "drop k or change the architecture"
            )
        for name in ("apply_b_dec_to_input", "normalize_decoder"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("hook_name", "hook_name_out", "model_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a non-empty string or None, got {value!r}")
        if self.d_out is not None:
            _check_positive_int("d_out", self.d_out)
        if self.apply_b_dec_to_input and self.d_out is not None and self.d_out != self.d_in:
            raise ValueError(
                f"apply_b_dec_to_input subtracts b_dec (width d_out={self.d_out}) from the input (width d_in={self.d_in}); "
                "a transcoder with d_out != d_in cannot use it: set apply_b_dec_to_input=False"
            )
        if self.reshape_activations not in ("none", "hook_z"):
            raise ValueError(f"reshape_activations must be 'none' or 'hook_z', got {self.reshape_activations!r}")
        object.__setattr__(self, "dtype", dtype_from_name(self.dtype))
        if not isinstance(self.metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(self.metadata).__name__}")

    @property
    def output_width(self) -> int:
        """Width of the reconstruction: ``d_out`` for a transcoder, else ``d_in``."""
        return self.d_out if self.d_out is not None else self.d_in

    @property
    def is_transcoder(self) -> bool:
        return self.hook_name_out is not None or self.d_out is not None

    def replace(self, **changes: Any) -> "SAEConfig":
        return dataclasses.replace(self, **changes)

    def to_saelens_dict(self) -> dict[str, Any]:
        """The ``cfg.json`` contents SAELens 6.x writes for this dictionary."""
        from interp_transformer.sae.saelens_format import config_to_saelens_dict

        return config_to_saelens_dict(self)

    @classmethod
    def from_saelens_dict(cls, data: dict[str, Any]) -> "SAEConfig":
        """Read a SAELens ``cfg.json`` (6.x layout with ``metadata``, or the older flat layout)."""
        from interp_transformer.sae.saelens_format import config_from_saelens_dict

        return config_from_saelens_dict(data)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
