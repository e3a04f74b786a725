"""``run_with_cache``: run a hooked model once and keep the activations a name filter selects.

Only the selected hook points get a hook, so nothing else is stored (and the model keeps its
fast paths wherever nothing is hooked: fused attention, fused LayerNorm). Activations are
detached; ``device`` moves each one as it is captured; ``pos_slice`` keeps only some positions
at capture time, so the rest is never held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import torch
from torch import Tensor

from interp_transformer import names, slicing
from interp_transformer.activation_cache.cache import ActivationCache
from interp_transformer.config import TransformerConfig

if TYPE_CHECKING:
    from interp_transformer.hooks import HookedModule, HookPoint

NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]


def resolve_cache_filter(model: "HookedModule", names_filter: NamesFilter) -> list[str]:
    """The hook names to capture, in forward order.

    ``None`` means every hook point; a string is one exact name; a list holds exact names;
    a callable is a predicate on names. Unknown names raise KeyError with the closest valid
    names; a filter that selects nothing raises ValueError.
    """
    if names_filter is None:
        selected = set(model.hook_dict)
    else:
        selected = set(model.resolve_hook_names(names_filter))
    if not selected:
        raise ValueError(
            f"names_filter {_describe(names_filter)} matches none of the model's {len(model.hook_dict)} hook points "
            f"(for example {list(model.hook_dict)[:3]}); see model.hook_points()"
        )
    return [name for name in model.hook_dict if name in selected]


def position_axis(hook_name: str, cfg: TransformerConfig | None = None) -> int:
    """The position axis of ``hook_name``'s activation, counted from the end, read from ``names``'s hook table.

    With ``cfg`` the table of that config decides (``use_split_qkv_input`` gives ``ln1`` hooks a
    head axis); without it the default switches do. A name outside the table (a hook point
    of some other HookedModule) is taken to be ``[batch pos d]``.
    """
    return position_axes([hook_name], cfg)[hook_name]


def position_axes(hook_names: Sequence[str], cfg: TransformerConfig | None = None) -> dict[str, int]:
    """``position_axis`` for several names, building the config's hook table once."""
    table = names.hook_shapes(cfg) if isinstance(cfg, TransformerConfig) else {}
    axes = {}
    for name in hook_names:
        dims = table.get(name) or names.default_hook_dims(name)
        axes[name] = names.position_axis_of(dims) if dims is not None else -2
    return axes


def capture(
    activation: Tensor,
    hook_name: str,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    pos_slice: slicing.SliceInput,
    remove_batch_dim: bool,
    axis: int | None = None,
) -> Tensor:
    """What gets stored for one activation: detached, optionally batch-squeezed, position-sliced, moved, cast.

    ``axis`` is the position axis from the end (default: ``position_axis(hook_name)``).
    """
    stored = activation.detach()
    if remove_batch_dim:
        if stored.shape[0] != 1:
            raise ValueError(
                f"remove_batch_dim=True needs a batch of one, but {hook_name} has batch size {stored.shape[0]}; "
                "run one prompt at a time, or keep the batch axis"
            )
        stored = stored[0]
    if not slicing.is_trivial(pos_slice):
        axis = position_axis(hook_name) if axis is None else axis
        if stored.ndim >= -axis:
            try:  # Copy the slice: a view would keep every position's storage alive.
                stored = slicing.apply_slice(stored, pos_slice, axis).clone()
            except IndexError as error:
                raise ValueError(
                    f"pos_slice={pos_slice!r} does not fit {hook_name}, which has {stored.shape[axis]} positions ({error})"
                ) from None
    if device is not None or dtype is not None:
        stored = stored.to(device=device, dtype=dtype)
    return stored


def compact(activations: dict[str, Tensor]) -> None:
    """Copy out stored views whose storage is mostly unused, so it can be freed.

    q, k and v are views into one fused projection: keeping all three costs nothing extra,
    keeping only q would hold the other two thirds.
    """
    used: dict[tuple[str, int], int] = {}
    for tensor in activations.values():
        key = (str(tensor.device), tensor.untyped_storage().data_ptr())
        used[key] = used.get(key, 0) + tensor.numel() * tensor.element_size()
    for name, tensor in activations.items():
        key = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if tensor.untyped_storage().nbytes() > used[key]:
            activations[name] = tensor.clone()


def run_with_cache(
    model: "HookedModule",
    *model_args: Any,
    names_filter: NamesFilter = None,
    device: torch.device | str | None = None,
    remove_batch_dim: bool = False,
    incl_bwd: bool = False,
    pos_slice: slicing.SliceInput = None,
    return_cache_object: bool = True,
    **model_kwargs: Any,
) -> tuple[Any, "ActivationCache | dict[str, Tensor]"]:
    """Run ``model(*model_args, **model_kwargs)`` and return ``(output, cache)``.

    See ``HookedModule.run_with_cache`` for the arguments.
    """
    selected = resolve_cache_filter(model, names_filter)
    slicing.to_index(pos_slice)  # a bad slice fails before the forward, not inside a hook
    device = _checked_device(device)
    if incl_bwd and not torch.is_grad_enabled():
        raise ValueError("incl_bwd=True needs gradients, but they are disabled here (torch.no_grad or inference_mode)")
    axes = position_axes(selected, getattr(model, "cfg", None))
    activations: dict[str, Tensor] = {}
    gradients: dict[str, Tensor] = {}

    def save_forward(activation: Tensor, hook: "HookPoint") -> None:
        activations[hook.name] = capture(activation, hook.name, device, None, pos_slice, remove_batch_dim, axes[hook.name])

    def save_backward(grad: Tensor, hook: "HookPoint") -> None:
        gradients[hook.name + "_grad"] = capture(grad, hook.name, device, None, pos_slice, remove_batch_dim, axes[hook.name])

    bwd_hooks = [(selected, save_backward)] if incl_bwd else []
    with model.hooks(fwd_hooks=[(selected, save_forward)], bwd_hooks=bwd_hooks):
        output = model(*model_args, **model_kwargs)
        if incl_bwd:
            _backward(output)
    activations.update(gradients)
    compact(activations)
    if not return_cache_object:
        return output, activations
    return output, ActivationCache(activations, model, has_batch_dim=not remove_batch_dim)


def _checked_device(device: torch.device | str | None) -> torch.device | None:
    """``device`` as a torch.device, refused before the forward when it is malformed or absent here."""
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r} is not a torch device; use e.g. 'cpu' or 'cuda:0' ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} asks for CUDA, which this machine does not have; use 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _backward(output: Any) -> None:
    if not isinstance(output, Tensor) or output.numel() != 1:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(
            f"incl_bwd=True calls .backward() on the model's output, which must be a scalar; got {shape}. "
            "Pass return_type='loss' (or hook a metric and call backward yourself with run_with_hooks)"
        )
    if not output.requires_grad:
        raise ValueError("incl_bwd=True: the output does not require grad (are the model's parameters frozen?)")
    output.backward()


def _describe(names_filter: NamesFilter) -> str:
    if callable(names_filter) and not isinstance(names_filter, str):
        return f"(the predicate {getattr(names_filter, '__name__', repr(names_filter))})"
    return repr(names_filter)
