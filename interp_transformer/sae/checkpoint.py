"""Training checkpoints: one safetensors file, written atomically, holding everything a resumed run needs.

``CHECKPOINT_FILE`` holds the dictionary's parameters (``sae.*``), Adam's moments (``adam.*``) and
how long each feature has been silent (``tokens_since_fired``); its metadata records the step, the
settings, the dictionary's config and which store and hook it reads. No randomness needs saving:
the data order and the resampling draws are functions of (seed, step). The file is replaced by
rename, so a run killed at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from interp_transformer.atomic_files import atomic_write
from interp_transformer.sae.config import SAEConfig

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT = "interp_transformer.sae_checkpoint"
FORMAT_VERSION = 1
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


@dataclass
class TrainingState:
    """What the loop carries from step to step (the optimizer holds the rest)."""

    step: int
    tokens_since_fired: Tensor  # [d_sae] int64


def config_to_json(cfg: SAEConfig) -> dict[str, Any]:
    values = dataclasses.asdict(cfg)
    values["dtype"] = str(cfg.dtype).removeprefix("torch.")
    return values


def save_checkpoint(folder: Path, sae: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState, info: dict[str, Any]) -> Path:
    """Write ``folder/CHECKPOINT_FILE`` atomically; ``info`` (settings, config, store, hook) goes in the metadata."""
    tensors = {f"sae.{name}": value.detach().cpu().contiguous() for name, value in sae.state_dict().items()}
    for name, parameter in sae.named_parameters():
        for key, value in optimizer.state.get(parameter, {}).items():
            tensors[f"adam.{name}.{key}"] = value.detach().cpu().contiguous()
    tensors["tokens_since_fired"] = state.tokens_since_fired.cpu().contiguous()
    metadata = {FORMAT: json.dumps({"format_version": FORMAT_VERSION, "step": state.step, **info}, sort_keys=True)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def read_checkpoint_info(folder: Path) -> dict[str, Any] | None:
    """The metadata of ``folder``'s checkpoint, or None when there is none."""
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {})[FORMAT])
    except Exception as error:  # safetensors raises its own types for a damaged header
        raise ValueError(f"{path} is not a readable training checkpoint ({type(error).__name__}: {error}); delete it to start over") from error
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is checkpoint format {info.get('format_version')!r}; this version reads {FORMAT_VERSION}")
    return info


def load_checkpoint(folder: Path, sae: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainingState:
    """Restore the dictionary and Adam in place from ``folder``'s checkpoint; return the loop state."""
    path = folder / CHECKPOINT_FILE
    info = read_checkpoint_info(folder)
    device = next(sae.parameters()).device
    with safe_open(str(path), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    sae.load_state_dict({name.removeprefix("sae."): value for name, value in tensors.items() if name.startswith("sae.")})
    for name, parameter in sae.named_parameters():
        saved = {key: tensors[f"adam.{name}.{key}"] for key in ADAM_STATE if f"adam.{name}.{key}" in tensors}
        if saved:  # Adam keeps its step counter on the CPU and the moments beside the parameter
            optimizer.state[parameter] = {key: value if key == "step" else value.to(device) for key, value in saved.items()}
    return TrainingState(step=int(info["step"]), tokens_since_fired=tensors["tokens_since_fired"].to(device))
