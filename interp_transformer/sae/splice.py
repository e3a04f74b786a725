"""Splicing: run a model with sparse dictionaries in place of the activations they reconstruct.

``with splice(model, sae):`` replaces the activation at ``sae.cfg.hook_name`` (a transcoder:
reads ``hook_name``, replaces ``hook_name_out``) by the dictionary's output, through the model's
own hook points, and registers the dictionary's hook points in the model as
``"<replaced hook>.hook_sae_acts_post"`` and so on (SAELens's names), so ``run_with_cache``,
``run_with_hooks`` and the patching functions reach the features like any other activation.

``include_error=True`` adds the error term ``x - reconstruction(x)`` so the spliced forward gives
the clean model's output; an edit to the features (ablation, steering, patching) then changes the
output by exactly the change in the reconstruction. Gradients are exact too: the features get
``W_dec @ grad`` and the activation upstream gets the same gradient as in the plain model (SAELens
computes the error term without gradients, so upstream gradients go through the SAE only).
When nothing is hooked on a dictionary spliced with the error term, its output is the activation
itself, so it is not computed at all.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor

from interp_transformer import names
from interp_transformer.config import TransformerConfig
from interp_transformer.hooks import HookedModule, HookPoint
from interp_transformer.sae.dictionary import SparseAutoencoder

_POSITION_WORDS = ("pos", "query_pos", "key_pos")


def replaced_hook(sae: SparseAutoencoder) -> str:
    """The model hook a dictionary replaces when spliced: ``hook_name_out`` for a transcoder, else ``hook_name``."""
    name = sae.cfg.hook_name_out or sae.cfg.hook_name
    if name is None:
        raise ValueError(
            "this dictionary has no hook_name, so it is not known where to splice it; set it with "
            "sae.cfg = sae.cfg.replace(hook_name='blocks.0.hook_resid_pre')"
        )
    return name


def sae_hook_name(sae: SparseAutoencoder, point: str = "hook_sae_acts_post") -> str:
    """The model-level name of one of a spliced dictionary's hook points, e.g. ``blocks.0.hook_resid_pre.hook_sae_acts_post``."""
    if point not in sae.hook_dict:
        raise KeyError(f"unknown dictionary hook point {point!r}; valid: {sae.hook_points()}")
    return f"{replaced_hook(sae)}.{point}"


@contextlib.contextmanager
def splice(model: HookedModule, *saes: SparseAutoencoder | Iterable[SparseAutoencoder], include_error: bool = False) -> Iterator[HookedModule]:
    """Run ``model`` with each dictionary replacing its hook's activation for the ``with`` block.

    The splice survives ``model.reset_hooks()`` inside the block (its hooks are permanent) and is
    removed on exit, even on error.
    """
    saes_checked = _check_saes(model, saes)
    if not isinstance(include_error, bool):
        raise TypeError(f"include_error must be True or False, got {include_error!r}")
    handles = []
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [handle.remove() for handle in handles])
        for sae in saes_checked:
            target = replaced_hook(sae)
            stack.enter_context(model.attached_hook_points(target, sae, after=target))
            splicer = _Splicer(sae, include_error)
            if sae.cfg.hook_name_out is not None:
                handles.append(model.add_hook(sae.cfg.hook_name, splicer.capture_input, is_permanent=True, prepend=True))
            handles.append(model.add_hook(target, splicer, is_permanent=True, prepend=True))
        yield model


def run_with_saes(
    model: HookedModule, *model_args: Any, saes: SparseAutoencoder | Iterable[SparseAutoencoder], include_error: bool = False, **model_kwargs: Any
) -> Any:
    """One forward of ``model(*model_args, **model_kwargs)`` with ``saes`` spliced in (SAELens's ``run_with_saes``)."""
    with splice(model, saes, include_error=include_error):
        return model(*model_args, **model_kwargs)


class _Splicer:
    """The hook that replaces an activation by a dictionary's output (a transcoder's input is captured first)."""

    def __init__(self, sae: SparseAutoencoder, include_error: bool) -> None:
        self.sae, self.include_error = sae, include_error
        self._input: Tensor | None = None
        self.__name__ = f"splice({sae.cfg.architecture} dictionary)"

    def capture_input(self, activation: Tensor, hook: HookPoint) -> None:
        self._input = activation

    def __call__(self, activation: Tensor, hook: HookPoint) -> Tensor:
        if self.sae.cfg.hook_name_out is None:
            sae_input = activation
        else:
            sae_input, self._input = self._input, None
            if sae_input is None:
                raise ValueError(
                    f"the transcoder writing {hook.name} reads {self.sae.cfg.hook_name}, which did not run in this forward "
                    "(start_at_layer past it?); start the forward before the transcoder's input hook"
                )
        return spliced_output(self.sae, sae_input, activation, self.include_error)


def spliced_output(sae: SparseAutoencoder, sae_input: Tensor, target: Tensor, include_error: bool) -> Tensor:
    """What replaces ``target``: the reconstruction of ``sae_input``, plus ``target - reconstruction`` if ``include_error``."""
    if include_error and not any(point.has_hooks() for point in sae.hook_dict.values()):
        return target  # nothing observes or edits the dictionary: reconstruction + error is the activation itself
    x = sae._flatten_heads(sae_input).to(sae.dtype)
    if include_error and sae.hook_sae_input.has_hooks():
        x = x.clone()  # a hook editing the input in place must not edit the activation the error is measured against
    acts_raw = sae.activation(sae.encode_pre(x))
    if not include_error:
        output = sae.decode(sae.hook_sae_acts_post(acts_raw))
    else:
        if sae.hook_sae_input.has_hooks() or sae.hook_sae_acts_pre.has_hooks():
            clean = sae.reconstruct_without_hooks(sae_input)
        else:
            clean = acts_raw @ sae.W_dec + sae.b_dec
        # A separate node for the features, so their gradient is W_dec @ grad and edits in place leave `clean` alone.
        recons = sae.decode(sae.hook_sae_acts_post(acts_raw.clone()))
        error = sae.hook_sae_error(sae._flatten_heads(target).to(sae.dtype) - clean)
        output = recons + error
    return sae.unflatten_heads(sae.hook_sae_output(output), target).to(target.dtype)


def _check_saes(model: HookedModule, saes: tuple) -> list[SparseAutoencoder]:
    if not isinstance(model, HookedModule):
        raise TypeError(f"splice needs a hooked model (HookedTransformer), got {type(model).__name__}")
    flat: list[Any] = []
    for item in saes:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    if not flat:
        raise ValueError("splice needs at least one dictionary: splice(model, sae)")
    replaced: dict[str, SparseAutoencoder] = {}
    for sae in flat:
        if not isinstance(sae, SparseAutoencoder):
            raise TypeError(f"splice takes SparseAutoencoder or Transcoder objects, got {type(sae).__name__}")
        if any(sae is other for other in replaced.values()):
            raise ValueError("the same dictionary was passed twice; splice each dictionary once")
        target = replaced_hook(sae)
        for name in (sae.cfg.hook_name, sae.cfg.hook_name_out):
            if name is not None:
                _check_hook_exists(model, name)
        if target in replaced:
            raise ValueError(f"two dictionaries replace {target!r}; splice one dictionary per hook point")
        _check_width(model, sae.cfg.hook_name, sae.cfg.d_in, sae, "reads")
        if sae.cfg.hook_name_out is not None:
            _check_width(model, sae.cfg.hook_name_out, sae.cfg.output_width, sae, "writes")
        _check_device(model, sae)
        replaced[target] = sae
    return flat


def _check_hook_exists(model: HookedModule, name: str) -> None:
    try:
        model._check_hook_name(name)
    except KeyError as error:
        raise KeyError(f"the dictionary's hook {name!r} is not a hook point of this model: {error.args[0]}; "
                       "fix cfg.hook_name (sae.cfg = sae.cfg.replace(hook_name=...))") from None


def _check_width(model: HookedModule, hook_name: str, width: int, sae: SparseAutoencoder, verb: str) -> None:
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, TransformerConfig):
        return  # another hooked module: the width is checked when the activation arrives
    shapes = names.hook_shapes(cfg)
    if hook_name not in shapes or shapes[hook_name][-1] in _POSITION_WORDS:
        return
    sizes = names.concrete_shape(shapes[hook_name], cfg, 1, 1)
    hook_width = sizes[-1]
    if sae.cfg.reshape_activations == "hook_z" and len(sizes) >= 4:
        hook_width = sizes[-2] * sizes[-1]
    if hook_width != width:
        fits = [name for name, dims in shapes.items()
                if dims[-1] not in _POSITION_WORDS and names.concrete_shape(dims, cfg, 1, 1)[-1] == width][:4]
        what = "d_in" if verb == "reads" else "d_out"
        hint = f"hooks of width {width} include {fits}" if fits else f"this model has no hook of width {width}"
        raise ValueError(
            f"the dictionary {verb} {hook_name!r} with {what}={width}, but that hook's activations have width {hook_width}; "
            f"use a dictionary trained on this hook, or splice it at a hook of its width ({hint})"
        )


def _check_device(model: HookedModule, sae: SparseAutoencoder) -> None:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device) and device != sae.device:
        raise ValueError(
            f"the dictionary is on {sae.device} but the model is on {device}; move it with sae.to({str(device)!r})"
        )
