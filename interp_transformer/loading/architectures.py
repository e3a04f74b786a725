"""Which converter handles which Hugging Face architecture, and the hub names they know."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from interp_transformer.loading import gpt2, gpt_neo, gpt_neox, llama

CONVERTERS: tuple[ModuleType, ...] = (gpt2, gpt_neo, gpt_neox, llama)


def converter_for(hf_config: dict[str, Any]) -> ModuleType:
    architectures = hf_config.get("architectures") or []
    for converter in CONVERTERS:
        if any(arch in converter.ARCHITECTURES for arch in architectures):
            return converter
    supported = sorted(arch for converter in CONVERTERS for arch in converter.ARCHITECTURES)
    raise ValueError(f"architecture {architectures or hf_config.get('model_type')!r} is not supported; supported: {supported}")


def hub_names() -> dict[str, str]:
    """Short model name -> Hugging Face hub repository id."""
    return {name: repo for converter in CONVERTERS for name, repo in converter.HUB_NAMES.items()}
