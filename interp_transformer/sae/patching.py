"""Feature-level activation patching and attribution patching through spliced dictionaries.

Both build on ``interp_transformer.patching``: ``patch_features`` hands ``patch_locations`` one
patch per (position, feature) on the dictionary's ``hook_sae_acts_post`` and returns a
``PatchingResult`` with axes ``("pos", "feature")`` (or ``("feature",)``), like ``patch_site``;
``attribute_features`` is Nanda's attribution patching over the same features (plus each
dictionary's error term, per position), the estimate ``baseline + (clean - corrupted) . grad``.
Dictionaries are spliced with the error term, so an unpatched run is the model's own and a patch
changes the output by exactly the change it makes to the reconstruction.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from interp_transformer.patching.attribution import forward_and_backward
from interp_transformer.patching.results import PatchingResult
from interp_transformer.patching.runner import check_metric_value
from interp_transformer.patching.sites import Patch, PatchLocation
from interp_transformer.patching.sweep import check_same_shape, check_tokens, patch_locations, position_labels
from interp_transformer.sae.dictionary import SparseAutoencoder
from interp_transformer.sae.splice import replaced_hook, sae_hook_name, splice

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

Metric = Callable[[Tensor], Tensor]


def patch_features(
    model: "HookedTransformer",
    sae: SparseAutoencoder,
    target_tokens: Tensor,
    source: Mapping[str, Tensor],
    metric: Metric,
    *,
    features: Sequence[int] | None = None,
    per_position: bool = True,
    **options: Any,
) -> PatchingResult:
    """The metric after copying each feature (at each position, or at all positions at once) from ``source``.

    Denoising: ``target_tokens`` are the corrupted prompts and ``source`` a clean run's cache holding
    ``sae_hook_name(sae)`` (``run_with_cache`` inside ``splice``). ``features`` (default: all) picks
    which; ``options`` are ``patch_locations``'s keywords (``memory_budget``, ``progress`` ...).
    """
    tokens = check_tokens(model, target_tokens, "target_tokens")
    feature_ids = _feature_ids(sae, features)
    with _spliced(model, [sae]):
        name = sae_hook_name(sae)
        source_acts = _source_features(source, name, tokens.shape, sae).to(model.device)
        positions = list(range(tokens.shape[1])) if per_position else [slice(None)]
        # A dictionary on blocks.L.hook_resid_pre would be applied twice if the patched runs started at
        # layer L from the (already spliced) cached residual stream: an empty patch on hook_embed makes them
        # start from the tokens.
        start_from_tokens = _empty_embed_patch(model) if replaced_hook(sae).endswith("hook_resid_pre") else ()
        locations = [
            PatchLocation((*start_from_tokens, Patch(name, (pos, feature), value=source_acts[:, pos, feature])))
            for pos in positions
            for feature in feature_ids
        ]
        options.setdefault("description", f"patching features of {replaced_hook(sae)}")
        values = patch_locations(model, tokens, None, metric, locations, **options)
    axes = ("pos", "feature") if per_position else ("feature",)
    shape = (len(positions), len(feature_ids)) if per_position else (len(feature_ids),)
    values = values.reshape(*shape, *values.shape[1:])
    axes = (*axes, "batch") if values.ndim > len(axes) else axes
    labels = position_labels(model, tokens, axes) | {"feature": [str(f) for f in feature_ids]}
    return PatchingResult(values, axes, labels, title=f"patching features of {replaced_hook(sae)}")


@dataclass
class FeatureAttribution:
    """Clean and corrupted feature activations and the metric's gradients on the corrupted run."""

    model: "HookedTransformer"
    corrupted_tokens: Tensor
    clean: dict[str, Tensor]
    corrupted: dict[str, Tensor]
    gradients: dict[str, Tensor]
    baseline: Tensor  # the metric on the corrupted run: a scalar or [batch]

    def features(self, sae: SparseAutoencoder, per_position: bool = True) -> PatchingResult:
        """Estimated metric after patching each feature (at each position): axes ``("pos", "feature")`` or ``("feature",)``."""
        change = self._change(sae_hook_name(sae), keep=(1, 2) if per_position else (2,))
        axes = ("pos", "feature") if per_position else ("feature",)
        return self._result(change, axes, f"attribution patching features of {replaced_hook(sae)}")

    def error(self, sae: SparseAutoencoder) -> PatchingResult:
        """Estimated metric after patching the dictionary's error term at each position: axes ``("pos",)``."""
        change = self._change(sae_hook_name(sae, "hook_sae_error"), keep=(1,))
        return self._result(change, ("pos",), f"attribution patching the error term of {replaced_hook(sae)}")

    def _change(self, name: str, keep: tuple[int, ...]) -> Tensor:
        if name not in self.gradients:
            raise KeyError(f"{name!r} was not attributed; pass its dictionary to attribute_features (attributed: {sorted(self.gradients)})")
        product = (self.clean[name] - self.corrupted[name]) * self.gradients[name]  # [batch pos d]
        per_prompt = self.baseline.ndim == 1
        summed = [axis for axis in range(product.ndim) if axis not in keep and not (per_prompt and axis == 0)]
        reduced = product.sum(dim=summed)
        return reduced.movedim(0, -1) if per_prompt else reduced

    def _result(self, change: Tensor, axes: tuple[str, ...], title: str) -> PatchingResult:
        axes = (*axes, "batch") if self.baseline.ndim == 1 else axes
        labels = position_labels(self.model, self.corrupted_tokens, axes)
        return PatchingResult(self.baseline + change, axes, labels, value_name="metric (estimate)", title=title)


def attribute_features(
    model: "HookedTransformer",
    saes: SparseAutoencoder | Iterable[SparseAutoencoder],
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    metric: Metric,
    attention_mask: Tensor | None = None,
) -> FeatureAttribution:
    """One clean forward, one corrupted forward and one backward, with ``saes`` spliced (error term included)."""
    saes = [saes] if isinstance(saes, SparseAutoencoder) else list(saes)
    clean_tokens = check_tokens(model, clean_tokens, "clean_tokens")
    corrupted_tokens = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    check_same_shape(clean_tokens, corrupted_tokens)
    with _spliced(model, saes):
        names = [sae_hook_name(sae, point) for sae in saes for point in ("hook_sae_acts_post", "hook_sae_error")]
        with torch.no_grad():
            _, clean = model.run_with_cache(clean_tokens, names_filter=names, attention_mask=attention_mask)
        corrupted, gradients, baseline = forward_and_backward(model, corrupted_tokens, metric, names, attention_mask)
    return FeatureAttribution(model, corrupted_tokens, dict(clean.items()), corrupted, gradients, baseline)


@contextlib.contextmanager
def _spliced(model: "HookedTransformer", saes: list[SparseAutoencoder]):
    """Splice (with the error term) the dictionaries not already spliced into ``model``."""
    missing = [sae for sae in saes if model.hook_dict.get(sae_hook_name(sae)) is not sae.hook_sae_acts_post]
    if not missing:
        yield
        return
    with splice(model, missing, include_error=True):
        yield


def _feature_ids(sae: SparseAutoencoder, features: Sequence[int] | None) -> list[int]:
    if features is None:
        return list(range(sae.cfg.d_sae))
    ids = [int(f) for f in (features.tolist() if isinstance(features, Tensor) else features)]
    bad = [f for f in ids if not 0 <= f < sae.cfg.d_sae]
    if bad or not ids:
        raise ValueError(f"features must be a non-empty list of ids in [0, d_sae={sae.cfg.d_sae}), got {bad or ids}")
    return ids


def _source_features(source: Mapping[str, Tensor], name: str, shape: torch.Size, sae: SparseAutoencoder) -> Tensor:
    if not isinstance(source, Mapping) or name not in source:
        raise KeyError(
            f"the source cache has no {name!r}; cache the clean run with the dictionary spliced: "
            f"with splice(model, sae): _, cache = model.run_with_cache(clean_tokens, names_filter={name!r})"
        )
    acts = source[name]
    if tuple(acts.shape) != (*shape, sae.cfg.d_sae):
        raise ValueError(
            f"the source's {name} has shape {tuple(acts.shape)}, but the target tokens {tuple(shape)} need "
            f"{(*shape, sae.cfg.d_sae)}: clean and corrupted prompts must have the same batch size and length"
        )
    return acts


def _empty_embed_patch(model: "HookedTransformer") -> tuple[Patch, ...]:
    empty = torch.empty(0, 1, device=model.device, dtype=model.cfg.dtype)  # broadcasts to [batch 0 d_model]
    return (Patch("hook_embed", (slice(0, 0),), value=lambda: empty),)
