"""Hook points and the hook-management base class every hooked model builds on.

A ``HookPoint`` is an identity module placed where an activation is born. Forward
hooks ``fn(activation, hook) -> Tensor | None`` observe it (return None) or
replace it downstream (return a tensor of the same shape). Backward hooks
``fn(grad, hook) -> Tensor | None`` receive the gradient of the activation; they
are attached to the graph during the forward, so they still fire on a later
``.backward()`` even after the forward's hooks were removed.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, Union

from torch import Tensor, nn

if TYPE_CHECKING:
    import torch

    from interp_transformer.cache import ActivationCache

HookFn = Callable[..., Union[Tensor, None]]
NameFilter = Union[str, Sequence[str], Callable[[str], bool]]
HookSpec = tuple[NameFilter, HookFn]
DIRECTIONS = ("fwd", "bwd")

_hook_ids = itertools.count()


@dataclass(eq=False)
class _Hook:
    fn: HookFn
    permanent: bool
    id: int = field(default_factory=lambda: next(_hook_ids))


class HookPoint(nn.Module):
    """Identity module that runs the hooks attached to it. ``name`` is set by the owning model."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self.ctx: dict[str, Any] = {}
        self._fwd: list[_Hook] = []
        self._bwd: list[_Hook] = []

    def has_hooks(self) -> bool:
        return bool(self._fwd or self._bwd)

    def layer(self) -> int:
        """The block index in the name (``blocks.3.attn.hook_q`` -> 3)."""
        parts = (self.name or "").split(".")
        if len(parts) < 2 or parts[0] != "blocks":
            raise ValueError(f"hook point {self.name!r} is not inside a block, so it has no layer")
        return int(parts[1])

    def forward(self, x: Tensor) -> Tensor:
        if not self._fwd and not self._bwd:
            return x
        for hook in list(self._fwd):
            out = hook.fn(x, hook=self)
            if out is not None:
                x = self._checked_replacement(hook.fn, x, out)
        if self._bwd and x.requires_grad:
            for hook in list(self._bwd):
                x.register_hook(_BackwardCall(hook.fn, self))
        return x

    def _checked_replacement(self, fn: HookFn, x: Tensor, out: Any) -> Tensor:
        fn_name = getattr(fn, "__name__", repr(fn))
        if not isinstance(out, Tensor):
            raise TypeError(
                f"hook {fn_name} on {self.name} returned {type(out).__name__}; a hook must return "
                "a tensor (to replace the activation) or None (to only observe it)"
            )
        if out.shape != x.shape:
            raise ValueError(
                f"hook {fn_name} on {self.name} returned shape {tuple(out.shape)}, but the activation "
                f"has shape {tuple(x.shape)}; return a tensor of the same shape, or None to only observe"
            )
        if out.dtype != x.dtype:
            raise TypeError(
                f"hook {fn_name} on {self.name} returned dtype {out.dtype}, but the activation has dtype {x.dtype}; "
                f"cast the replacement with .to({x.dtype}) (e.g. a patch taken from a run in another precision)"
            )
        if out.device != x.device:
            raise ValueError(
                f"hook {fn_name} on {self.name} returned a tensor on {out.device}, but the activation is on {x.device}; "
                f"move the replacement with .to({str(x.device)!r})"
            )
        return out

    def add(self, fn: HookFn, direction: str = "fwd", permanent: bool = False, prepend: bool = False) -> _Hook:
        hooks = self._hook_list(direction)
        hook = _Hook(fn, permanent)
        hooks.insert(0, hook) if prepend else hooks.append(hook)
        return hook

    def remove(self, hook: _Hook) -> None:
        for hooks in (self._fwd, self._bwd):
            if hook in hooks:
                hooks.remove(hook)

    def clear(self, including_permanent: bool = False) -> None:
        self._fwd = [h for h in self._fwd if h.permanent and not including_permanent]
        self._bwd = [h for h in self._bwd if h.permanent and not including_permanent]
        self.ctx.clear()

    def _hook_list(self, direction: str) -> list[_Hook]:
        if direction not in DIRECTIONS:
            raise ValueError(f"hook direction must be one of {DIRECTIONS}, got {direction!r}")
        return self._fwd if direction == "fwd" else self._bwd

    def extra_repr(self) -> str:
        return f"name={self.name!r}, fwd_hooks={len(self._fwd)}, bwd_hooks={len(self._bwd)}"


class _BackwardCall:
    """Tensor gradient hook that calls a user backward hook with its HookPoint."""

    def __init__(self, fn: HookFn, point: HookPoint) -> None:
        self.fn, self.point = fn, point

    def __call__(self, grad: Tensor) -> Tensor | None:
        out = self.fn(grad, hook=self.point)
        return None if out is None else self.point._checked_replacement(self.fn, grad, out)


class HookHandle:
    """What ``add_hook`` returns: ``handle.remove()`` detaches exactly the hooks it added."""

    def __init__(self, attached: list[tuple[HookPoint, _Hook]]) -> None:
        self._attached = attached

    def remove(self) -> None:
        for point, hook in self._attached:
            point.remove(hook)
        self._attached = []


def _check_hook_specs(specs: Any, argument: str) -> list[HookSpec]:
    """``specs`` as a list of ``(name_filter, hook_fn)`` pairs, or a TypeError saying how it is malformed."""
    example = f"{argument}=[('blocks.0.hook_resid_pre', hook_fn)]"
    if isinstance(specs, tuple) and len(specs) == 2 and callable(specs[1]) and not isinstance(specs[0], tuple):
        raise TypeError(f"{argument} is a list of (name, hook) pairs; wrap the single pair in a list: {example}")
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Iterable):
        raise TypeError(f"{argument} must be a list of (name, hook) pairs, got {type(specs).__name__}; e.g. {example}")
    specs = list(specs)
    for spec in specs:
        if not isinstance(spec, (tuple, list)) or len(spec) != 2:
            raise TypeError(f"each item of {argument} must be a (name, hook) pair, got {spec!r}; e.g. {example}")
    return specs


class HookedModule(nn.Module):
    """Base class that finds its HookPoints, names them, and manages hooks on them.

    Subclasses build their modules and then call ``setup_hooks()`` once.
    """

    def setup_hooks(self) -> None:
        points = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                points[name] = module
        self._hook_points = points

    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        """Every hook point by name, in the order the forward pass reaches them."""
        return self._hook_points

    def hook_points(self) -> list[str]:
        return list(self._hook_points)

    @contextlib.contextmanager
    def attached_hook_points(self, prefix: str, module: "HookedModule", after: str | None = None) -> Iterator[list[str]]:
        """Register ``module``'s hook points here as ``prefix + "." + name`` for the ``with`` block.

        While attached, ``add_hook``, ``hooks``, ``run_with_hooks`` and ``run_with_cache`` reach them
        by those names (this is how a spliced SAE's internals are cached); they are listed right
        after ``after`` in ``hook_dict``, where the forward reaches them. On exit the names and this
        module's registry are restored, even on error.
        """
        points = {f"{prefix}.{name}": point for name, point in module.hook_dict.items()}
        clash = [name for name in points if name in self._hook_points]
        if clash:
            raise ValueError(f"hook names {clash[:3]} are already registered here; is this module already attached?")
        elsewhere = [point.name for name, point in module.hook_dict.items() if point.name != name]
        if elsewhere:
            raise ValueError(f"{type(module).__name__}'s hook points are already attached elsewhere (as {elsewhere[0]!r})")
        items = list(self._hook_points.items())
        at = len(items) if after is None else [name for name, _ in items].index(after) + 1
        self._hook_points = dict(items[:at] + list(points.items()) + items[at:])
        for name, point in points.items():
            point.name = name
        try:
            yield list(points)
        finally:
            for name, point in module.hook_dict.items():
                point.name = name
            self._hook_points = {name: point for name, point in self._hook_points.items() if name not in points}

    def resolve_hook_names(self, name_filter: NameFilter) -> list[str]:
        """Hook-point names matching an exact name, a list of names, or a predicate."""
        if isinstance(name_filter, str):
            self._check_hook_name(name_filter)
            return [name_filter]
        if callable(name_filter):
            matched = [name for name in self._hook_points if name_filter(name)]
            if not matched:  # almost always a typo in the predicate; the hook would silently never fire
                raise ValueError(
                    f"the hook name predicate {getattr(name_filter, '__name__', repr(name_filter))} matches none of the "
                    f"model's {len(self._hook_points)} hook points (for example {list(self._hook_points)[:3]}); "
                    "see model.hook_points()"
                )
            return matched
        if isinstance(name_filter, Iterable):
            names = list(name_filter)
            for name in names:
                if not isinstance(name, str):
                    raise TypeError(f"hook name filters in a list must be strings, got {name!r}")
                self._check_hook_name(name)
            return names
        raise TypeError(
            f"a hook name filter must be a name, a list of names or a predicate, got {type(name_filter).__name__}"
        )

    def _check_hook_name(self, name: str) -> None:
        if name in self._hook_points:
            return
        close = difflib.get_close_matches(name, self._hook_points, n=5, cutoff=0.6)
        if not close:  # shorthand such as "resid_pre": name the full names it would mean
            close = [point for point in self._hook_points if point.endswith(("hook_" + name, "." + name))][:5]
        hint = f"closest valid names: {close}" if close else "see model.hook_points() for all names"
        raise KeyError(f"unknown hook name {name!r}; {hint} (get_act_name turns shorthand into full names)")

    def add_hook(
        self,
        name: NameFilter,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        prepend: bool = False,
    ) -> HookHandle:
        """Attach ``hook`` to every hook point matching ``name``. Permanent hooks survive ``reset_hooks``."""
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        attached = []
        for point_name in self.resolve_hook_names(name):
            point = self._hook_points[point_name]
            attached.append((point, point.add(hook, dir, is_permanent, prepend)))
        return HookHandle(attached)

    def add_perma_hook(self, name: NameFilter, hook: HookFn, dir: str = "fwd") -> HookHandle:
        return self.add_hook(name, hook, dir=dir, is_permanent=True)

    def reset_hooks(self, including_permanent: bool = False) -> None:
        """Remove all hooks (and hook contexts); permanent ones stay unless asked."""
        for point in self._hook_points.values():
            point.clear(including_permanent)

    @contextlib.contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[HookSpec] = (),
        bwd_hooks: Sequence[HookSpec] = (),
        reset_hooks_end: bool = True,
    ) -> Iterator["HookedModule"]:
        """Attach hooks for the duration of a ``with`` block; they are removed on exit, even on error."""
        checked = [(direction, _check_hook_specs(specs, f"{direction}_hooks"))
                   for direction, specs in (("fwd", fwd_hooks), ("bwd", bwd_hooks))]
        handles = []
        try:
            for direction, specs in checked:
                for name, fn in specs:
                    handles.append(self.add_hook(name, fn, dir=direction))
            yield self
        finally:
            if reset_hooks_end:
                for handle in handles:
                    handle.remove()

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: Sequence[HookSpec] = (),
        bwd_hooks: Sequence[HookSpec] = (),
        reset_hooks_end: bool = True,
        **model_kwargs: Any,
    ) -> Any:
        """Run the forward with temporary hooks. Backward hooks fire on a later ``.backward()`` of this output."""
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end):
            return self(*model_args, **model_kwargs)

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NameFilter | None = None,
        device: "torch.device | str | None" = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        pos_slice: Any = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, "ActivationCache | dict[str, Tensor]"]:
        """Run the forward and return ``(output, cache)`` with the activations ``names_filter`` selects.

        ``names_filter``: None (every hook point), an exact name, a list of names, or a predicate.
        Only the selected activations are captured (detached). ``device`` moves each one as it is
        captured; ``remove_batch_dim`` drops the batch axis of a one-prompt batch; ``pos_slice``
        keeps only some positions (an int, a (start, stop) tuple, a slice or a list of indices).
        ``incl_bwd`` calls ``.backward()`` on the (scalar) output and also stores each gradient
        as ``name + "_grad"``. The cache is an ``ActivationCache``, or a plain dict with
        ``return_cache_object=False`` (kept for TransformerLens scripts; the cache is a Mapping anyway).
        """
        from interp_transformer.caching import run_with_cache

        return run_with_cache(
            self,
            *model_args,
            names_filter=names_filter,
            device=device,
            remove_batch_dim=remove_batch_dim,
            incl_bwd=incl_bwd,
            pos_slice=pos_slice,
            return_cache_object=return_cache_object,
            **model_kwargs,
        )
