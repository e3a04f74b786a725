"""TransformerConfig: the frozen description of a model's shape, with validation only."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import torch

from interp_transformer.activation_functions import ACTIVATION_FUNCTIONS

ACT_FNS = tuple(ACTIVATION_FUNCTIONS)  # the MLP's table is the one list of valid act_fn names
NORMALIZATION_TYPES = ("LN", "LNPre", "RMS", "RMSPre", None)
POSITIONAL_EMBEDDING_TYPES = ("standard", "shortformer", "rotary")
ATTN_TYPES = ("global", "local")
INT_FIELDS = ("d_model", "n_layers", "n_heads", "d_head", "d_vocab", "n_ctx", "d_vocab_out")
OPTIONAL_INT_FIELDS = ("d_mlp", "seed", "rotary_dim", "n_key_value_heads", "window_size")
BOOL_FIELDS = (
    "attn_only", "use_attn_result", "use_split_qkv_input", "use_hook_mlp_in", "allow_d_model_mismatch",
    "default_prepend_bos", "gated_mlp", "parallel_attn_mlp",
)
POSITIVE_FLOAT_FIELDS = ("layer_norm_eps", "init_range", "attn_scale", "rotary_base")
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and behaviour of a HookedTransformer. Defaults are GPT-2 small.

    ``positional_embedding_type="shortformer"`` adds the positional embedding only to the
    query and key inputs of each attention layer (after ``ln1``), never to the residual stream.
    ``"rotary"`` rotates the first ``rotary_dim`` (default ``d_head``) dimensions of each query
    and key by position (base ``rotary_base``, halves rotated together as in Llama/GPT-NeoX);
    there is no ``W_pos`` then. ``normalization_type="RMS"`` is RMSNorm (weight, no bias, no
    centring); ``gated_mlp`` computes ``act(x W_gate) * (x W_in + b_in)`` before ``W_out``;
    ``n_key_value_heads`` (grouped-query attention) gives ``W_K``/``W_V`` fewer heads, each shared
    by ``n_heads / n_key_value_heads`` query heads.

    ``parallel_attn_mlp`` (GPT-NeoX, GPT-J) makes each block's attention and MLP both read
    ``resid_pre`` (through ``ln1`` and ``ln2``), with ``resid_post = resid_pre + attn_out + mlp_out``
    and no ``resid_mid``. ``attn_types`` (GPT-Neo) names each layer's attention ``"global"`` (full
    causal) or ``"local"`` (each query sees only the last ``window_size`` positions, itself included).

    Fields left as None are derived in ``__post_init__``: ``d_vocab_out`` from
    ``d_vocab``, ``attn_scale`` from ``d_head``. ``d_model`` must equal
    ``n_heads * d_head`` unless ``allow_d_model_mismatch`` says otherwise.
    """

    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_head: int = 64
    d_mlp: int | None = 3072
    d_vocab: int = 50257
    n_ctx: int = 1024
    layer_norm_eps: float = 1e-5
    init_range: float = 0.02
    act_fn: str = "gelu_new"
    normalization_type: str | None = "LN"
    attn_only: bool = False
    positional_embedding_type: str = "standard"
    dtype: torch.dtype = torch.float32
    seed: int | None = None
    use_attn_result: bool = False
    use_split_qkv_input: bool = False
    use_hook_mlp_in: bool = False
    allow_d_model_mismatch: bool = False
    d_vocab_out: int | None = None
    attn_scale: float | None = None
    default_prepend_bos: bool = True
    model_name: str = "custom"
    tokenizer_name: str | None = None
    original_architecture: str | None = None
    rotary_dim: int | None = None
    rotary_base: float = 10000.0
    gated_mlp: bool = False
    n_key_value_heads: int | None = None
    parallel_attn_mlp: bool = False
    attn_types: tuple[str, ...] | None = None
    window_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.dtype, str):
            if self.dtype not in DTYPES:
                raise ValueError(f"dtype {self.dtype!r} is not supported; use one of {sorted(DTYPES)}")
            object.__setattr__(self, "dtype", DTYPES[self.dtype])
        if self.normalization_type == "none":
            object.__setattr__(self, "normalization_type", None)
        if self.d_vocab_out is None:
            object.__setattr__(self, "d_vocab_out", self.d_vocab)
        if self.attn_scale is None:
            object.__setattr__(self, "attn_scale", math.sqrt(self.d_head))
        if self.positional_embedding_type == "rotary" and self.rotary_dim is None:
            object.__setattr__(self, "rotary_dim", self.d_head)
        if self.attn_types is not None:  # lists arrive from JSON; a frozen config keeps a tuple
            object.__setattr__(self, "attn_types", tuple(self.attn_types))
        if self.attn_only and self.d_mlp is not None:
            object.__setattr__(self, "d_mlp", None)
        self._validate()

    def _validate(self) -> None:
        self._validate_types()
        for name in ("d_model", "n_layers", "n_heads", "d_head", "d_vocab", "n_ctx", "d_vocab_out"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not self.attn_only and (self.d_mlp is None or self.d_mlp <= 0):
            raise ValueError(f"d_mlp must be a positive int for a model with MLPs, got {self.d_mlp!r} (or set attn_only=True)")
        if self.d_model != self.n_heads * self.d_head and not self.allow_d_model_mismatch:
            raise ValueError(
                f"d_model ({self.d_model}) != n_heads * d_head ({self.n_heads} * {self.d_head} = "
                f"{self.n_heads * self.d_head}); fix the sizes, or pass allow_d_model_mismatch=True "
                "if the mismatch is intended"
            )
        if self.act_fn not in ACT_FNS:
            raise ValueError(f"act_fn {self.act_fn!r} is not supported; use one of {list(ACT_FNS)}")
        if self.normalization_type not in NORMALIZATION_TYPES:
            raise ValueError(
                f"normalization_type {self.normalization_type!r} is not supported; use one of "
                f"{list(NORMALIZATION_TYPES)} (or 'none')"
            )
        if self.positional_embedding_type not in POSITIONAL_EMBEDDING_TYPES:
            raise ValueError(
                f"positional_embedding_type {self.positional_embedding_type!r} is not supported; "
                f"use one of {list(POSITIONAL_EMBEDDING_TYPES)}"
            )
        if self.dtype not in DTYPES.values():
            raise ValueError(f"dtype {self.dtype} is not supported; use one of {sorted(DTYPES)}")
        if self.positional_embedding_type == "rotary" and (
            not isinstance(self.rotary_dim, int) or not 0 < self.rotary_dim <= self.d_head or self.rotary_dim % 2
        ):
            raise ValueError(f"rotary_dim must be an even int in (0, d_head={self.d_head}], got {self.rotary_dim!r}")
        if self.n_key_value_heads is not None and (
            not isinstance(self.n_key_value_heads, int) or self.n_key_value_heads <= 0 or self.n_heads % self.n_key_value_heads
        ):
            raise ValueError(
                f"n_key_value_heads must be a positive int dividing n_heads={self.n_heads}, got {self.n_key_value_heads!r}"
            )
        if self.n_key_value_heads not in (None, self.n_heads) and self.use_split_qkv_input:
            raise ValueError("use_split_qkv_input is not supported with grouped-query attention (n_key_value_heads < n_heads)")
        if self.parallel_attn_mlp and self.attn_only:
            raise ValueError("parallel_attn_mlp needs an MLP to run beside attention; it cannot be combined with attn_only=True")
        if self.attn_types is not None:
            if len(self.attn_types) != self.n_layers or any(kind not in ATTN_TYPES for kind in self.attn_types):
                raise ValueError(
                    f"attn_types must name one of {list(ATTN_TYPES)} for each of the {self.n_layers} layers, got {list(self.attn_types)}"
                )
            if "local" in self.attn_types and (not isinstance(self.window_size, int) or self.window_size <= 0):
                raise ValueError(f"local attention layers need a positive int window_size, got {self.window_size!r}")
        for name in POSITIVE_FLOAT_FIELDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.window_size is not None and self.window_size <= 0:
            raise ValueError(f"window_size must be a positive int or None, got {self.window_size!r}")

    def _validate_types(self) -> None:
        """Wrong types fail here, before any arithmetic; bools are refused where ints are meant (True == 1)."""
        for name in INT_FIELDS + OPTIONAL_INT_FIELDS:
            value = getattr(self, name)
            if value is None and name in OPTIONAL_INT_FIELDS:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
        for name in BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
        for name in POSITIVE_FLOAT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        for name in ("model_name", "act_fn", "positional_embedding_type"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> "TransformerConfig":
        """A copy with some fields changed.

        A derived field (``attn_scale``, ``d_vocab_out``, ``rotary_dim``) that holds its derived
        value is re-derived from the new sources unless given; one set to something else (GPT-Neo's
        ``attn_scale=1``, a partial ``rotary_dim``) is kept as it was.
        """
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            close = {name: difflib.get_close_matches(name, fields, n=3) for name in unknown}
            raise TypeError(f"unknown TransformerConfig fields {unknown} (closest: {close}); valid fields are {sorted(fields)}")
        values = {name: getattr(self, name) for name in fields}
        for derived, sources, derive in _DERIVED_FIELDS:
            if derived not in changes and any(name in changes for name in sources) and getattr(self, derived) == derive(self):
                values[derived] = None
        values.update(changes)
        return TransformerConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; ``from_dict`` inverts it."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["dtype"] = str(self.dtype).removeprefix("torch.")
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TransformerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig fields {unknown}; valid fields are {sorted(known)}")
        return cls(**values)

    def fingerprint(self) -> str:
        """Short stable hash of the config, used to tie saved activations to a model shape."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# (derived field, the fields it is derived from, its derived value); __post_init__ fills a None with it.
_DERIVED_FIELDS = (
    ("attn_scale", ("d_head",), lambda cfg: math.sqrt(cfg.d_head)),
    ("d_vocab_out", ("d_vocab",), lambda cfg: cfg.d_vocab),
    ("rotary_dim", ("d_head", "positional_embedding_type"),
     lambda cfg: cfg.d_head if cfg.positional_embedding_type == "rotary" else None),
)
