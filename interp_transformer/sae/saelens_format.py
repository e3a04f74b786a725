"""SAELens's on-disk format: a folder with ``cfg.json`` and ``sae_weights.safetensors``; no pickle anywhere.

``cfg.json`` in SAELens 6.x (what ``save`` writes)::

    {"architecture": "standard" | "topk" | "jumprelu" | "transcoder" | "jumprelu_transcoder",
     "d_in": 768, "d_sae": 6144, "dtype": "float32", "device": "cpu",
     "apply_b_dec_to_input": true, "normalize_activations": "none", "reshape_activations": "none",
     "k": 32, "rescale_acts_by_decoder_norm": false,      # topk only
     "d_out": 768,                                        # transcoders only
     "metadata": {"hook_name": "blocks.0.hook_resid_pre", "hook_name_out": null, "model_name": "gpt2",
                  "sae_lens_version": "6.0.0", ...}}

Before 6.0 the metadata fields sat at the top level (``hook_name`` or ``hook_point``,
``model_name``, ``activation_fn_str``/``activation_fn`` with ``activation_fn_kwargs: {"k": ...}``
for TopK); both layouts load. Tensors: ``W_enc [d_in d_sae]``, ``b_enc [d_sae]``,
``W_dec [d_sae d_out]``, ``b_dec [d_out]`` and, for JumpReLU, ``threshold [d_sae]``.
A BatchTopK dictionary is written as SAELens writes it: a JumpReLU whose every threshold is the
learned ``topk_threshold``. A TopK transcoder has no SAELens class; it is written with
architecture ``"topk_transcoder"``, which loads here but not in SAELens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from interp_transformer.atomic_files import atomic_write
from interp_transformer.sae.config import DTYPES, SAEConfig, dtype_from_name

if TYPE_CHECKING:
    from interp_transformer.sae.dictionary import SparseAutoencoder

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"  # the cfg.json layout written here; SAELens reads it as a 6.x config
# SAELens architecture -> (our architecture, is a transcoder)
ARCHITECTURES_READ = {
    "standard": ("standard", False),
    "topk": ("topk", False),
    "jumprelu": ("jumprelu", False),
    "batchtopk": ("batchtopk", False),
    "transcoder": ("standard", True),
    "jumprelu_transcoder": ("jumprelu", True),
    "topk_transcoder": ("topk", True),
}
# Normalisations that SAELens applies as the identity at inference (the scale is folded or applied by the caller).
IDENTITY_NORMALIZATIONS = ("none", "expected_average_only_in")
METADATA_KEYS_OLD = (
    "model_name", "hook_name", "hook_name_out", "hook_layer", "hook_head_index", "model_class_name",
    "model_from_pretrained_kwargs", "prepend_bos", "context_size", "dataset_path", "neuronpedia_id",
    "sae_lens_training_version", "exclude_special_tokens", "seqpos_slice",
)


def config_from_saelens_dict(data: Any, source: str = "cfg.json") -> SAEConfig:
    """An SAEConfig from a SAELens config dict of either layout, or a ValueError naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source} must hold a JSON object (SAELens's config), got {type(data).__name__}")
    metadata = data.get("metadata")
    if metadata is None:  # before SAELens 6.0: metadata at the top level
        metadata = {key: data[key] for key in METADATA_KEYS_OLD if key in data}
        if "hook_point" in data and "hook_name" not in metadata:
            metadata["hook_name"] = data["hook_point"]
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: 'metadata' must be a JSON object, got {metadata!r}")
    metadata = dict(metadata)
    architecture, is_transcoder = _architecture(data, source)
    for required in ("d_in", "d_sae"):
        if required not in data:
            raise ValueError(f"{source} has no {required!r} field; a SAELens config names d_in and d_sae")
    normalize = data.get("normalize_activations", "none")
    if normalize is None or normalize is False:
        normalize = "none"
    if normalize is True:
        normalize = "expected_average_only_in"
    if normalize not in IDENTITY_NORMALIZATIONS:
        raise ValueError(
            f"{source}: normalize_activations={normalize!r} is not supported here (only {list(IDENTITY_NORMALIZATIONS)}); "
            "fold the normalisation into the weights in SAELens (e.g. fold_activation_norm_scaling_factor) and re-save"
        )
    reshape = data.get("reshape_activations", "none") or "none"
    if reshape not in ("none", "hook_z"):
        raise ValueError(f"{source}: reshape_activations={reshape!r} is not one of ['none', 'hook_z']")
    metadata["normalize_activations"] = normalize
    k = data.get("k")
    if k is None and architecture == "topk":
        k = (data.get("activation_fn_kwargs") or {}).get("k")
    fields = {
        "architecture": architecture,
        "d_in": data["d_in"],
        "d_sae": data["d_sae"],
        "k": k if architecture in ("topk", "batchtopk") else None,
        "apply_b_dec_to_input": data.get("apply_b_dec_to_input", not is_transcoder),
        "hook_name": metadata.pop("hook_name", None),
        "hook_name_out": metadata.pop("hook_name_out", None),
        "d_out": data.get("d_out") if is_transcoder else None,
        "dtype": data.get("dtype", "float32"),
        "model_name": metadata.pop("model_name", None),
        "reshape_activations": reshape,
        "metadata": metadata,
    }
    if isinstance(fields["k"], float) and fields["k"].is_integer():  # BatchTopK's k is a float in SAELens
        fields["k"] = int(fields["k"])
    if is_transcoder and fields["d_out"] is None:
        raise ValueError(f"{source}: architecture {data.get('architecture')!r} is a transcoder but has no 'd_out' field")
    try:
        return SAEConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source} does not describe a valid dictionary: {error}") from None


def _architecture(data: dict[str, Any], source: str) -> tuple[str, bool]:
    name = data.get("architecture")
    if name is None:  # pre-6.0 configs name the activation instead
        activation = data.get("activation_fn", data.get("activation_fn_str", "relu"))
        name = "topk" if activation == "topk" else "standard"
    if name not in ARCHITECTURES_READ:
        raise ValueError(
            f"{source}: architecture {name!r} is not supported; supported SAELens architectures are "
            f"{list(ARCHITECTURES_READ)} (skip transcoders, gated and matryoshka SAEs are not)"
        )
    return ARCHITECTURES_READ[name]


def config_to_saelens_dict(cfg: SAEConfig) -> dict[str, Any]:
    """The SAELens 6.x ``cfg.json`` for ``cfg`` (BatchTopK is written as the JumpReLU it is saved as)."""
    architecture = "jumprelu" if cfg.architecture == "batchtopk" else cfg.architecture
    if cfg.is_transcoder:
        architecture = {"standard": "transcoder", "jumprelu": "jumprelu_transcoder", "topk": "topk_transcoder"}[architecture]
    metadata = dict(cfg.metadata)
    normalize = metadata.pop("normalize_activations", "none")
    metadata.update(
        hook_name=cfg.hook_name, hook_name_out=cfg.hook_name_out, model_name=cfg.model_name,
        sae_lens_version=SAELENS_FORMAT_VERSION, sae_lens_training_version=metadata.get("sae_lens_training_version"),
    )
    data: dict[str, Any] = {
        "architecture": architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": _dtype_name(cfg.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": normalize,
        "reshape_activations": cfg.reshape_activations,
        "metadata": metadata,
    }
    if architecture in ("topk", "topk_transcoder"):
        data.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    if cfg.is_transcoder:
        data["d_out"] = cfg.output_width
    return data


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def save_dictionary(sae: "SparseAutoencoder", folder: str | Path) -> Path:
    """Write ``sae`` to ``folder`` (created if needed) in SAELens's format; each file appears only when complete."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot save a dictionary to {str(folder)!r}: it is a file, not a folder; pick a folder path")
    tensors = {name: sae.get_parameter(name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if sae.cfg.architecture == "jumprelu":
        tensors["threshold"] = sae.threshold.detach()
    if sae.cfg.architecture == "batchtopk":
        if float(sae.topk_threshold) <= 0:
            raise ValueError(
                "this BatchTopK dictionary has no learned topk_threshold yet (it is 0), so it cannot be saved as "
                "SAELens saves BatchTopK (a JumpReLU with that threshold); train it first, or set sae.topk_threshold"
            )
        tensors["threshold"] = torch.full_like(sae.b_enc, float(sae.topk_threshold)).detach()
    tensors = {name: tensor.to("cpu").contiguous() for name, tensor in tensors.items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / WEIGHTS_FILENAME, lambda tmp: save_file(tensors, tmp))
    text = json.dumps(config_to_saelens_dict(sae.cfg), indent=2)
    atomic_write(folder / CFG_FILENAME, lambda tmp: Path(tmp).write_text(text))
    return folder


def load_dictionary(
    folder: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    expected_class: type | None = None,
) -> "SparseAutoencoder":
    """A SparseAutoencoder or Transcoder from a SAELens-format folder, checked field by field and tensor by tensor."""
    from interp_transformer.sae.dictionary import SparseAutoencoder
    from interp_transformer.sae.transcoder import Transcoder

    folder = Path(folder)
    cfg_path, weights_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} does not exist; a SAELens-format dictionary is a folder with {CFG_FILENAME} and "
                f"{WEIGHTS_FILENAME} (written by SAELens's save_model or by SparseAutoencoder.save)"
            )
    cfg = config_from_saelens_dict(_read_json(cfg_path), source=str(cfg_path))
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype_from_name(dtype))
    tensors = _read_tensors(weights_path)
    tensors = _fold_rescale_by_decoder_norm(_read_json(cfg_path), tensors)
    cls = Transcoder if cfg.is_transcoder else SparseAutoencoder
    if expected_class is not None and not issubclass(cls, expected_class):
        raise ValueError(
            f"{str(folder)!r} holds an SAE, not a {expected_class.__name__}; load it with SparseAutoencoder.load"
        )
    sae = cls(cfg, init_weights=False)
    _check_tensors(sae, tensors, weights_path)
    with torch.no_grad():
        for name, tensor in tensors.items():
            sae.state_dict()[name].copy_(tensor.to(cfg.dtype))
    return sae.to(device)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{str(path)!r} is not valid JSON ({error}); the file is corrupted or truncated: "
            "re-save the dictionary, or fix the file by hand"
        ) from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file ({error}); re-save the dictionary") from None


def _fold_rescale_by_decoder_norm(data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SAELens's ``rescale_acts_by_decoder_norm`` TopK, folded so the same features and outputs come out unscaled."""
    if not data.get("rescale_acts_by_decoder_norm") or "W_dec" not in tensors:
        return tensors
    norms = tensors["W_dec"].norm(dim=-1)
    folded = dict(tensors)
    folded["W_enc"] = tensors["W_enc"] * norms[None, :]
    folded["b_enc"] = tensors["b_enc"] * norms
    folded["W_dec"] = tensors["W_dec"] / norms[:, None]
    return folded


def _check_tensors(sae: "SparseAutoencoder", tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = {name: tuple(value.shape) for name, value in sae.state_dict().items()}
    if _all_ones(tensors.get("scaling_factor")):  # older SAELens wrote a no-op scaling factor of ones
        del tensors["scaling_factor"]
    missing = sorted(set(expected) - set(tensors))
    unknown = sorted(set(tensors) - set(expected))
    if missing:
        raise ValueError(f"{str(path)!r} lacks the tensors {missing} that a {sae.cfg.architecture} dictionary needs")
    if unknown:
        raise ValueError(
            f"{str(path)!r} has tensors {unknown} that a {sae.cfg.architecture} dictionary does not use "
            f"(expected exactly {sorted(expected)}); is the cfg.json's architecture right?"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(
                f"{str(path)!r}: {name} has shape {tuple(tensors[name].shape)}, but cfg.json (d_in={sae.cfg.d_in}, "
                f"d_sae={sae.cfg.d_sae}, d_out={sae.cfg.output_width}) needs {shape}; the config and weights disagree"
            )
        if not tensors[name].is_floating_point():
            raise ValueError(f"{str(path)!r}: {name} has dtype {tensors[name].dtype}; expected floating-point weights")


def _all_ones(tensor: torch.Tensor | None) -> bool:
    return tensor is not None and bool(torch.all(tensor == 1))
