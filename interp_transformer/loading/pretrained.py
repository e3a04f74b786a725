"""Loading as pure functions: a name or path in, ``(cfg, state_dict, tokenizer)`` out; no model is built here.

``HookedTransformer.from_pretrained`` builds ``cls(cfg)`` from what ``load_weights`` returns, so the
loaders never import the model (no import cycle) and a subclass loads as itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from interp_transformer.config import DTYPES, TransformerConfig
from interp_transformer.loading.architectures import converter_for, hub_names
from interp_transformer.loading.embedded import embedded_models
from interp_transformer.loading.hf_files import read_hf_config, read_hf_weights
from interp_transformer.loading.native import is_native, load_native
from interp_transformer.loading.processing import process_weights

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from interp_transformer.model import HookedTransformer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


class PretrainedWeights(NamedTuple):
    """What a loader returns: the config, our state dict (in ``cfg.dtype``) and the tokenizer (None if none is saved)."""

    cfg: TransformerConfig
    state_dict: dict[str, Tensor]
    tokenizer: "PreTrainedTokenizerBase | None"


def available_models() -> dict[str, list[str]]:
    """Names ``from_pretrained`` accepts besides local paths."""
    return {"embedded": sorted(embedded_models()), "hub": sorted(hub_names())}


def load_weights(
    name_or_path: str | Path,
    dtype: torch.dtype | str | None = None,
    fold_ln: bool = False,
    center_writing_weights: bool = False,
    center_unembed: bool = False,
    fold_value_biases: bool = False,
    refactor_factored_attn_matrices: bool = False,
) -> PretrainedWeights:
    """``(cfg, state_dict, tokenizer)`` of a hub name, embedded-model name or local directory.

    By default the weights are used exactly as stored: no LayerNorm folding, no centring, no
    bias folding, so parameters and activations are those of the original checkpoint. This
    differs from TransformerLens, whose ``from_pretrained`` folds and centres by default (its
    ``from_pretrained_no_processing`` matches ours). Each processing option is a step of
    ``loading.processing`` (see there); all preserve log-probabilities. Pass
    ``fold_ln=center_writing_weights=center_unembed=fold_value_biases=True`` to get
    TransformerLens's default weights. Processing happens in float32 before any ``dtype`` cast.
    """
    directory, name = resolve_model_dir(name_or_path)
    cfg, state = read_checkpoint(directory, name)
    if fold_ln or center_writing_weights or center_unembed or fold_value_biases or refactor_factored_attn_matrices:
        # Half-precision checkpoints are processed in float32: folding sums d_model products.
        state = {key: value.float() if value.dtype in (torch.float16, torch.bfloat16) else value for key, value in state.items()}
    state, cfg = process_weights(
        state, cfg, fold_ln=fold_ln, center_writing_weights=center_writing_weights, center_unembed=center_unembed,
        fold_value_biases=fold_value_biases, refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    if dtype is not None:
        cfg = cfg.replace(dtype=DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype)
    state = {key: value.to(cfg.dtype) for key, value in state.items()}
    return PretrainedWeights(cfg, state, load_tokenizer(directory))


def read_checkpoint(directory: Path, name: str) -> tuple[TransformerConfig, dict[str, Tensor]]:
    """Config and state dict as stored: our own format, or a Hugging Face directory through its converter."""
    if is_native(directory):
        return load_native(directory)
    hf_config = read_hf_config(directory)
    converter = converter_for(hf_config)
    cfg = converter.convert_config(hf_config, name)
    return cfg, converter.convert_weights(read_hf_weights(directory), cfg)


def load_pretrained(name_or_path: str | Path, model_class: "type[HookedTransformer] | None" = None, **kwargs: Any) -> "HookedTransformer":
    """``model_class.from_pretrained(name_or_path, **kwargs)`` (default ``HookedTransformer``); kept for older code."""
    from interp_transformer.model import HookedTransformer  # on call only: the model imports loading, not the reverse

    model_class = HookedTransformer if model_class is None else model_class
    if not (isinstance(model_class, type) and issubclass(model_class, HookedTransformer)):
        raise TypeError(f"model_class must be HookedTransformer or a subclass of it, got {model_class!r}")
    return model_class.from_pretrained(name_or_path, **kwargs)


def resolve_model_dir(name_or_path: str | Path) -> tuple[Path, str]:
    """A local directory holding the model, and the model's name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path, path.name
    name = str(name_or_path)
    if _looks_like_path(name):
        raise FileNotFoundError(f"model directory {path} does not exist")
    embedded = embedded_models()
    if name in embedded:
        return embedded[name], name
    repo_id = hub_names().get(name) or (name if "/" in name else None)
    if repo_id is None:
        raise ValueError(
            f"unknown model {name!r}: it is not a local directory, an embedded model {sorted(embedded)} "
            f"or a supported hub name {sorted(hub_names())}"
        )
    return download_from_hub(repo_id), name


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``owner/name``; anything else with a separator is meant as a local path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def download_from_hub(repo_id: str) -> Path:
    """Fetch config, tokenizer and weights (safetensors preferred) into the Hugging Face cache."""
    from huggingface_hub import snapshot_download

    try:
        directory = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
        if not any(directory.glob("*.safetensors")):
            directory = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS + ["pytorch_model*.bin"]))
    except Exception as error:  # the hub client raises many network and auth error types
        raise OSError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({type(error).__name__}: {error}); without "
            "network access, pass a local directory written by save_pretrained instead"
        ) from error
    return directory


def load_tokenizer(directory: Path):
    if not any((directory / name).exists() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))
