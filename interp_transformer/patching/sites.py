"""Where to patch: site names, patch granularities (axes) and the index sets they expand to.

A *site* names one kind of activation: TransformerLens shorthand (``"resid_pre"``, ``"z"``,
``"pattern"``, ``"mlp_out"``, ``"embed"``), a name relative to a block (``"ln1.hook_scale"``) or a
full hook name (``"blocks.3.attn.hook_z"``). A *granularity* is the tuple of axes one patch
location fixes: ``("layer", "pos")`` patches one position of one layer's activation at a time,
``("layer", "head_index")`` one head at every position, ``("layer",)`` a whole layer. Axes are
``"layer"`` plus the activation's own dimension words after ``batch`` (``pos``, ``head_index``,
``query_pos``, ``key_pos``, ``d_model``, ``d_mlp``, ...); TransformerLens's ``head``,
``dest_pos`` and ``src_pos`` are accepted for ``head_index``, ``query_pos`` and ``key_pos``.

A ``PatchLocation`` is one run's worth of patches: any number of ``Patch(hook_name, index)``
applied together, where ``index`` indexes the activation after its batch axis. Arbitrary index
sets are lists of locations.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from torch import Tensor

from interp_transformer import names

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

TL_AXIS_ALIASES = {"head": "head_index", "dest_pos": "query_pos", "src_pos": "key_pos"}
POSITION_AXES = ("pos", "query_pos", "key_pos")
EMBEDDING_LAYER = -1  # hook_embed / hook_pos_embed run before block 0


@dataclass(frozen=True, eq=False)
class Patch:
    """Overwrite ``activation[:, *index]`` of one hook point in the patched run.

    The new value comes from the source activations (a clean cache) unless ``value`` gives it
    (``[batch, *indexed shape]``, or a function returning it, called when the patch is applied).
    ``setter`` replaces the copy with a TransformerLens-style
    ``setter(activation, index, source_activation)`` that edits one run's ``[batch ...]`` activation.
    """

    hook_name: str
    index: tuple = ()
    value: Tensor | Callable[[], Tensor] | None = None
    setter: Callable[..., Any] | None = None
    setter_index: tuple = ()


@dataclass(frozen=True, eq=False)
class PatchLocation:
    """Patches applied together in one patched run (usually one)."""

    patches: tuple[Patch, ...]
    label: str = ""

    def __post_init__(self) -> None:
        if not self.patches:
            raise ValueError("a PatchLocation needs at least one Patch")


@dataclass(frozen=True)
class SiteGrid:
    """The locations of one site at one granularity, in row-major order of ``shape``."""

    site: str
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    locations: list[PatchLocation] = field(repr=False)


def hook_layer(hook_name: str, n_layers: int) -> int:
    """The block a hook point belongs to; -1 for the embeddings, ``n_layers`` for ``ln_final``."""
    parts = hook_name.split(".")
    if parts[0] == "blocks":
        return int(parts[1])
    if parts[0] in ("hook_embed", "hook_pos_embed"):
        return EMBEDDING_LAYER
    return n_layers


def site_hook_names(model: "HookedTransformer", site: str) -> dict[int | None, str]:
    """Layer -> hook name for a site (``{None: name}`` for a site outside the blocks or a full name).

    Raises KeyError naming the valid sites when ``site`` matches no hook point of this model.
    """
    if not isinstance(site, str):
        raise TypeError(f"a patching site is a string such as 'resid_pre' or 'blocks.0.attn.hook_z', got {site!r}")
    hooks = names.hook_shapes(model.cfg)  # the hook points that run (hook_result only with use_attn_result)
    if site in hooks:
        return {None: site}
    relative = [f"blocks.{layer}.{site}" for layer in range(model.cfg.n_layers)]
    if all(name in hooks for name in relative):
        return dict(enumerate(relative))
    top, per_layer = _shorthand(site), []
    try:  # shorthand that needs a layer type ("scale") has no per-layer reading
        per_layer = [names.get_act_name(site, layer) for layer in range(model.cfg.n_layers)]
    except ValueError:
        pass
    if per_layer and all(name in hooks for name in per_layer):
        return dict(enumerate(per_layer))
    if top in hooks:
        return {None: top}
    valid = available_sites(model)
    close = difflib.get_close_matches(site, valid, n=4, cutoff=0.5)
    hint = f"did you mean {close}? " if close else ""
    raise KeyError(f"unknown patching site {site!r} for this model; {hint}valid sites: {valid} (or any full hook name)")


def _shorthand(site: str) -> str | None:
    try:
        return names.get_act_name(site)
    except ValueError:
        return None


def available_sites(model: "HookedTransformer") -> list[str]:
    """Site names this model accepts, shortest form first (full hook names work too)."""
    sites = []
    for name in names.hook_shapes(model.cfg):
        if name.startswith("blocks.0."):
            relative = name.removeprefix("blocks.0.")
            short = relative.rsplit("hook_", 1)[-1]
            try:
                sites.append(short if names.get_act_name(short, 0) == name else relative)
            except ValueError:
                sites.append(relative)
        elif not name.startswith("blocks."):
            short = name.removeprefix("hook_")
            sites.append(short if names.get_act_name(short) == name else name)
    return sites


def activation_dims(model: "HookedTransformer", hook_name: str) -> tuple:
    """Dimension words of a hook's activation, batch first (from ``names.hook_shapes``)."""
    return names.hook_shapes(model.cfg)[hook_name]


def normalize_axes(axes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(axes, str):
        raise TypeError(f"axes must be a tuple of axis names such as ('layer', 'pos'), got the string {axes!r}")
    normalized = tuple(TL_AXIS_ALIASES.get(axis, axis) for axis in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"axes {tuple(axes)} name the same axis twice")
    return normalized


def site_grid(model: "HookedTransformer", site: str, axes: Sequence[str], n_pos: int) -> SiteGrid:
    """Every location of ``site`` at granularity ``axes`` (row-major: the last axis varies fastest)."""
    by_layer = site_hook_names(model, site)
    axes = normalize_axes(axes)
    dims = activation_dims(model, next(iter(by_layer.values())))[1:]
    valid = (("layer",) if None not in by_layer else ()) + tuple(d for d in dims if isinstance(d, str))
    unknown = [axis for axis in axes if axis not in valid]
    if unknown:
        raise ValueError(
            f"site {site!r} cannot be patched along {unknown}; its axes are {list(valid)} (pick any of them, in any order)"
        )
    sizes = dict(zip(dims, names.concrete_shape(dims, model.cfg, batch=1, pos=n_pos)))
    sizes["layer"] = len(by_layer)
    shape = tuple(sizes[axis] for axis in axes)
    locations = []
    for values in itertools.product(*(range(size) for size in shape)):
        chosen = dict(zip(axes, values))
        layer = chosen.get("layer")
        hook_name = by_layer[layer] if layer is not None else next(iter(by_layer.values()))
        index = _index_for(dims, chosen)
        locations.append(PatchLocation((Patch(hook_name, index),), label=_label(chosen)))
    return SiteGrid(site, axes, shape, locations)


def _index_for(dims: tuple, chosen: dict[str, int]) -> tuple:
    """``activation[:, *index]`` selects the chosen coordinates; trailing full slices are dropped."""
    index = [chosen.get(dim, slice(None)) if isinstance(dim, str) else slice(None) for dim in dims]
    while index and index[-1] == slice(None):
        index.pop()
    return tuple(index)


def _label(chosen: dict[str, int]) -> str:
    return " ".join(f"{axis}={value}" for axis, value in chosen.items())
