"""Reading a Hugging Face model directory: config.json and its (possibly sharded) weight files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp_transformer.loading.integrity import read_safetensors, read_torch_checkpoint

WEIGHT_FILES = (
    ("model.safetensors", "model.safetensors.index.json", read_safetensors),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", read_torch_checkpoint),
)
# Fields every Hugging Face config may carry that say nothing about the network's computation.
GENERIC_CONFIG_FIELDS = frozenset(
    {
        "_name_or_path", "architectures", "dtype", "torch_dtype", "transformers_version", "model_type",
        "id2label", "label2id", "_num_labels", "return_dict", "output_attentions", "output_hidden_states",
        "problem_type", "is_encoder_decoder", "chunk_size_feed_forward", "use_cache", "bos_token_id",
        "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "task_specific_params",
        "output_past", "gradient_checkpointing", "initializer_range", "tokenizer_class", "prefix",
        "_attn_implementation_autoset", "use_return_dict",
    }
)


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory} has no config.json; is it a model directory written by save_pretrained?") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error


def check_config_fields(hf_config: dict[str, Any], understood: frozenset[str], architecture: str) -> None:
    """Refuse config fields the converter does not know, rather than silently ignoring them."""
    unknown = sorted(set(hf_config) - understood - GENERIC_CONFIG_FIELDS)
    if unknown:
        raise ValueError(
            f"the {architecture} converter does not understand config field(s) {unknown}; the converted model "
            "could compute something different from the original, so loading stops here"
        )


def read_hf_weights(directory: Path) -> dict[str, Tensor]:
    """All tensors of the model in ``directory``, preferring safetensors over weights-only pickles."""
    for single, index, reader in WEIGHT_FILES:
        if (directory / single).exists():
            return reader(directory / single)
        if (directory / index).exists():
            shards = sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(reader(directory / shard))
            return state
    raise FileNotFoundError(
        f"no weights found in {directory}: expected one of "
        f"{[name for pair in WEIGHT_FILES for name in pair[:2]]}"
    )


class TensorTaker:
    """Hands out a checkpoint's tensors by name, checking shapes, and remembers which were used."""

    def __init__(self, state: dict[str, Tensor], architecture: str) -> None:
        self.state, self.architecture, self.used = state, architecture, set()

    def __call__(self, key: str, shape: tuple[int, ...]) -> Tensor:
        if key not in self.state:
            raise KeyError(f"{self.architecture} checkpoint is missing tensor {key!r}")
        tensor = self.state[key]
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{self.architecture} tensor {key!r} has shape {tuple(tensor.shape)}, expected {shape} from the config"
            )
        self.used.add(key)
        return tensor

    @property
    def dtype(self) -> torch.dtype:
        """The checkpoint's dtype, for the zero tensors a converter adds."""
        return next(iter(self.state.values())).dtype if self.state else torch.float32

    def check_all_used(self) -> None:
        unused = sorted(set(self.state) - self.used)
        if unused:
            raise ValueError(f"{self.architecture} checkpoint has tensors the converter does not understand: {unused[:10]}")
