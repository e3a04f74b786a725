"""Attribution patching (Nanda 2023): a linear estimate of every activation-patching result at once.

Patching a clean activation into the corrupted run changes the metric by about
``(clean - corrupted) . d metric / d activation``, the gradient taken on the corrupted run. So
one forward on the clean prompts, one forward on the corrupted prompts and one backward give an
estimate for every site and every granularity: the elementwise product summed over whatever
the patch location covers (the batch too, unless the metric returns one value per prompt).

``AttributionPatching.estimate(site, axes)`` returns the estimated *patched metric* (the
corrupted run's metric plus the estimated change), in the same shape and axes as
``sweep.patch_site`` (and the matching TransformerLens-named experiment), so the two compare
directly. The estimate is good where the metric is close to linear in the activation (head
outputs, late layers) and poor for large, nonlinear changes (an early residual stream at the
token that differs), as Nanda's post discusses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import Tensor

from interp_transformer.patching.results import PatchingResult
from interp_transformer.patching.runner import check_metric_value
from interp_transformer.patching.sites import activation_dims, normalize_axes, site_hook_names
from interp_transformer.patching.sweep import check_same_shape, check_tokens, position_labels

if TYPE_CHECKING:
    from interp_transformer.hooks import HookPoint
    from interp_transformer.model import HookedTransformer

Metric = Callable[[Tensor], Tensor]
DEFAULT_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "k", "v", "pattern")


@dataclass
class AttributionPatching:
    """Clean and corrupted activations and the metric's gradients on the corrupted run, for some sites."""

    model: "HookedTransformer"
    corrupted_tokens: Tensor
    clean: dict[str, Tensor]
    corrupted: dict[str, Tensor]
    gradients: dict[str, Tensor]
    baseline: Tensor  # the metric on the corrupted run: a scalar or [batch]

    def estimate(self, site: str, axes: Sequence[str] = ("layer", "pos")) -> PatchingResult:
        """Estimated metric after patching each location of ``site`` at granularity ``axes`` (see ``sites.py``)."""
        by_layer = site_hook_names(self.model, site)
        axes = normalize_axes(axes)
        missing = [name for name in by_layer.values() if name not in self.gradients]
        if missing:
            raise KeyError(
                f"site {site!r} was not attributed; include it in attribution_patching(..., sites=[...]) "
                f"(attributed: {sorted(self.gradients)[:4]}...)"
            )
        dims = activation_dims(self.model, next(iter(by_layer.values())))
        valid = (("layer",) if None not in by_layer else ()) + tuple(d for d in dims[1:] if isinstance(d, str))
        unknown = [axis for axis in axes if axis not in valid]
        if unknown:
            raise ValueError(f"site {site!r} cannot be attributed along {unknown}; its axes are {list(valid)}")
        per_prompt = self.baseline.ndim == 1
        other_axes = [axis for axis in axes if axis != "layer"]
        per_hook = [self._reduce(name, dims, other_axes, per_prompt) for name in by_layer.values()]
        change = torch.stack(per_hook, dim=axes.index("layer")) if "layer" in axes else per_hook[0]
        result_axes = (*axes, "batch") if per_prompt else axes
        labels = position_labels(self.model, self.corrupted_tokens, result_axes)
        title = f"attribution patching {site} by {', '.join(axes)}"
        return PatchingResult(self.baseline + change, result_axes, labels, value_name="metric (estimate)", title=title)

    def _reduce(self, name: str, dims: tuple, kept: list[str], per_prompt: bool) -> Tensor:
        """Sum (clean - corrupted) * gradient over every axis the location covers, keeping ``kept`` in order."""
        product = (self.clean[name] - self.corrupted[name]) * self.gradients[name]
        keep = [dims.index(axis) for axis in kept] + ([0] if per_prompt else [])
        summed = [i for i in range(product.ndim) if i not in keep]
        reduced = product.sum(dim=summed) if summed else product
        order = sorted(keep)  # positions of the kept axes after summing, in their original order
        return reduced.permute([order.index(i) for i in keep])


def attribution_patching(
    model: "HookedTransformer",
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    metric: Callable[[Tensor], Tensor],
    sites: Sequence[str] = DEFAULT_SITES,
    attention_mask: Tensor | None = None,
) -> AttributionPatching:
    """Cache clean activations, corrupted activations and the metric's gradients for ``sites``.

    One forward per input and one backward (through ``torch.autograd.grad``, so no parameter
    ``.grad`` is touched). Default sites the model lacks (``mlp_out`` of an attention-only model)
    are skipped; a site named explicitly must exist.
    """
    clean_tokens = check_tokens(model, clean_tokens, "clean_tokens")
    corrupted_tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    check_same_shape(clean_tokens, corrupted_tokens)
    hook_names = _hook_names(model, sites, skip_missing=sites is DEFAULT_SITES)
    with torch.no_grad():
        _, clean = model.run_with_cache(clean_tokens, names_filter=hook_names, attention_mask=attention_mask)
    corrupted, gradients, baseline = forward_and_backward(model, corrupted_tokens, metric, hook_names, attention_mask)
    return AttributionPatching(model, corrupted_tokens, dict(clean.items()), corrupted, gradients, baseline)


def forward_and_backward(
    model: "HookedTransformer", tokens: Tensor, metric: Metric, hook_names: list[str], attention_mask: Tensor | None
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """The activations at ``hook_names`` on ``tokens``, the metric's gradient with respect to each, and the metric."""
    activations: dict[str, Tensor] = {}

    def track(activation: Tensor, hook: "HookPoint") -> Tensor:
        # With frozen parameters nothing would require grad: make the embeddings the graph's leaves.
        return activation if activation.requires_grad else activation.detach().requires_grad_()

    def keep(activation: Tensor, hook: "HookPoint") -> None:
        activations[hook.name] = activation

    embeddings = [name for name in ("hook_embed", "hook_pos_embed") if name in model.hook_dict]  # rotary: no pos embed
    fwd_hooks = [(embeddings, track), (hook_names, keep)]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd_hooks):
        value = metric(model(tokens, attention_mask=attention_mask))
        baseline = check_metric_value(value, tokens.shape[0])
        if not isinstance(value, Tensor) or not value.requires_grad:
            raise ValueError(
                "the metric's value does not depend on the logits through autograd; compute it with torch ops on the logits"
            )
        inputs = [activations[name] for name in hook_names]
        gradients = torch.autograd.grad(value.sum(), inputs, allow_unused=True)
    grads = {name: torch.zeros_like(activations[name]) if g is None else g.detach() for name, g in zip(hook_names, gradients)}
    return {name: activations[name].detach() for name in hook_names}, grads, baseline


def _hook_names(model: "HookedTransformer", sites: Sequence[str], skip_missing: bool) -> list[str]:
    if isinstance(sites, str):
        raise TypeError(f"sites must be a list of site names, got the string {sites!r}")
    wanted = set()
    for site in sites:
        try:
            wanted.update(site_hook_names(model, site).values())
        except KeyError:
            if not skip_missing:
                raise
    return [name for name in model.hook_dict if name in wanted]
