"""Logit effects of decoder directions: what one unit of a feature adds to each token's logit along the direct path.

A feature's decoder row is a direction in the space its dictionary writes (``cfg.hook_name_out``
for a transcoder, else ``cfg.hook_name``). It reaches the residual stream directly for residual,
``hook_attn_out`` and ``hook_mlp_out`` hooks, through ``W_O`` for ``attn.hook_z`` and through
``W_out`` for ``mlp.hook_post``. Its logit effect is that residual direction times ``W_U``.

``through_final_norm=True`` first applies what the final norm does to a direction linearly, as
TransformerLens's logit lens does with the weights: LayerNorm centres it and multiplies by
``ln_final.w``, RMSNorm multiplies by ``w`` (the division by the norm's scale, which depends on
the whole residual stream, is left out: it rescales every token's effect alike). With folded
weights (``LNPre``/``RMSPre``) ``W_U`` already holds ``w``. ``False`` is the bare ``W_dec @ W_U``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import einops
import torch
from torch import Tensor

from interp_transformer.sae.dictionary import SparseAutoencoder
from interp_transformer.sae.feature_checks import check_count, check_features

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

RESIDUAL_WRITERS = ("hook_embed", "hook_pos_embed", "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")


@dataclass(frozen=True, eq=False)  # tensors have no single truth value: compare fields with torch.equal
class LogitEffects:
    """Each feature's ``k`` most promoted and most suppressed tokens. Rows follow ``features``."""

    features: Tensor  # [feature] indices into d_sae
    top_tokens: Tensor  # [feature k] largest effect first
    top_values: Tensor  # [feature k]
    bottom_tokens: Tensor  # [feature k] most negative effect first
    bottom_values: Tensor  # [feature k]
    through_final_norm: bool

    def row(self, feature: int) -> int:
        matches = (self.features == feature).nonzero()
        if isinstance(feature, bool) or not isinstance(feature, int) or matches.numel() == 0:
            shown = self.features.tolist() if self.features.numel() <= 20 else f"{self.features.numel()} features"
            raise KeyError(f"feature {feature!r} has no logit effects here; this result holds {shown}")
        return int(matches[0, 0])


def feature_residual_directions(
    model: "HookedTransformer", sae: SparseAutoencoder, features: Sequence[int] | Tensor | None = None
) -> Tensor:
    """``[feature d_model]``: the residual-stream direction each feature's decoder row writes."""
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder or Transcoder, got {type(sae).__name__}")
    from interp_transformer.names import concrete_shape, hook_shapes

    selected = check_features(features, sae.cfg.d_sae)
    hook = sae.cfg.hook_name_out or sae.cfg.hook_name
    if hook is None:
        raise ValueError("the dictionary's cfg.hook_name is None, so where it writes is unknown; set it (cfg.replace(hook_name=...))")
    table = hook_shapes(model.cfg)
    if hook not in table:
        raise KeyError(f"the model has no hook {hook!r} (the dictionary writes there); use a dictionary made for this model")
    width = concrete_shape(table[hook], model.cfg, 1, 1)[2:]
    W_dec = sae.W_dec.detach()[selected.to(sae.device)].to(model.unembed.W_U.device)
    if W_dec.shape[1] != math.prod(width):
        raise ValueError(
            f"the dictionary writes {W_dec.shape[1]} values per position (d_out) but {hook!r} has shape {list(width)} per "
            "position; use a dictionary made for this model and hook"
        )
    kind = hook.rsplit(".", 1)[-1]
    if kind in RESIDUAL_WRITERS:
        return W_dec.to(model.cfg.dtype)
    layer = int(hook.split(".")[1]) if hook.startswith("blocks.") else None
    if hook.endswith("attn.hook_z"):
        W_O = model.blocks[layer].attn.W_O.detach()
        z = W_dec.reshape(-1, *W_O.shape[:2]).to(W_O.dtype)
        return einops.einsum(z, W_O, "feature head_index d_head, head_index d_head d_model -> feature d_model")
    if hook.endswith("mlp.hook_post"):
        return W_dec.to(model.cfg.dtype) @ model.blocks[layer].mlp.W_out.detach()
    raise ValueError(
        f"logit effects need a dictionary that writes into the residual stream ({', '.join(RESIDUAL_WRITERS)}), "
        f"attn.hook_z or mlp.hook_post; this one writes {hook!r}"
    )


def feature_logit_weights(
    model: "HookedTransformer",
    sae: SparseAutoencoder,
    features: Sequence[int] | Tensor | None = None,
    *,
    through_final_norm: bool = True,
) -> Tensor:
    """``[feature d_vocab_out]``: each feature's direct effect on every logit (see the module docstring)."""
    directions = feature_residual_directions(model, sae, features)
    return _through_unembed(model, directions, through_final_norm)


def logit_effects(
    model: "HookedTransformer",
    sae: SparseAutoencoder,
    features: Sequence[int] | Tensor | None = None,
    k: int = 10,
    *,
    through_final_norm: bool = True,
    chunk_features: int = 256,
) -> LogitEffects:
    """The ``k`` tokens each feature's decoder direction most promotes and most suppresses.

    Features are unembedded ``chunk_features`` at a time, so memory holds ``chunk_features x d_vocab``.
    """
    if not isinstance(through_final_norm, bool):
        raise TypeError(f"through_final_norm must be True or False, got {through_final_norm!r}")
    check_count("k", k)
    check_count("chunk_features", chunk_features)
    if k > model.cfg.d_vocab_out:
        raise ValueError(f"k={k} is larger than the vocabulary (d_vocab_out={model.cfg.d_vocab_out}); use k <= {model.cfg.d_vocab_out}")
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a SparseAutoencoder or Transcoder, got {type(sae).__name__}")
    selected = check_features(features, sae.cfg.d_sae)
    directions = feature_residual_directions(model, sae, selected)
    parts: dict[str, list[Tensor]] = {"top_tokens": [], "top_values": [], "bottom_tokens": [], "bottom_values": []}
    with torch.no_grad():
        for start in range(0, directions.shape[0], chunk_features):
            weights = _through_unembed(model, directions[start : start + chunk_features], through_final_norm).float()
            top, bottom = weights.topk(k, dim=-1), weights.topk(k, dim=-1, largest=False)
            parts["top_tokens"].append(top.indices.cpu())
            parts["top_values"].append(top.values.cpu())
            parts["bottom_tokens"].append(bottom.indices.cpu())
            parts["bottom_values"].append(bottom.values.cpu())
    return LogitEffects(features=selected, through_final_norm=through_final_norm, **{name: torch.cat(p) for name, p in parts.items()})


def _through_unembed(model: "HookedTransformer", directions: Tensor, through_final_norm: bool) -> Tensor:
    if through_final_norm:
        norm = model.cfg.normalization_type
        if norm in ("LN", "LNPre"):
            directions = directions - directions.mean(-1, keepdim=True)
        weight = getattr(model.ln_final, "w", None)
        if weight is not None:
            directions = directions * weight.detach()
    return directions @ model.unembed.W_U.detach()
