"""Attention-score decomposition: which residual-stream sources a head's scores come from, on each side.

The residual stream entering layer ``L`` is a sum of components: the token and positional
embeddings, each earlier head's output, each earlier layer's attention bias ``b_O`` and MLP output.
Holding the LayerNorm scale at the value it had on this input (read from ``ln1.hook_scale``), the
query and key are linear in those components plus a bias term (``ln1.b`` read through ``W_Q`` /
``W_K``, plus ``b_Q`` / ``b_K``), so each score splits exactly into one term per (query component,
key component) pair. Summed over both component axes the terms give the head's attention scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_transformer.circuits.heads import check_head, check_layer
from interp_transformer.components.layer_norm import LayerNorm, LayerNormPre

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer


@dataclass(frozen=True)
class AttentionScoreDecomposition:
    """``contributions[query_component, key_component, batch, query_pos, key_pos]``; ``components`` names each index.

    Components: "embed", "pos_embed", then per earlier layer "L{l}H{h}" for each head, "L{l} attn bias"
    and (with MLPs) "L{l} mlp", and last "bias" (the LayerNorm bias read by the head, plus ``b_Q`` / ``b_K``).

    Entries for masked (future) keys are zero. ``contributions.sum((0, 1))`` is the head's attention
    scores (after the ``1/attn_scale`` factor, before masking and softmax).
    """

    contributions: Float[Tensor, "query_component key_component batch query_pos key_pos"]
    components: list[str]

    def mean_abs(self) -> Float[Tensor, "query_component key_component"]:
        """Mean absolute contribution of each pair over the unmasked (query, key) positions of the batch."""
        query_len, key_len = self.contributions.shape[-2:]
        allowed = torch.ones(query_len, key_len, dtype=torch.bool, device=self.contributions.device).tril()
        return self.contributions.abs()[..., allowed].mean(-1).mean(-1)


def decompose_attention_scores(
    model: "HookedTransformer",
    tokens: Int[Tensor, "batch pos"],
    layer: int,
    head: int,
    cache: Mapping[str, Tensor] | None = None,
) -> AttentionScoreDecomposition:
    """Split head ``(layer, head)``'s attention scores on ``tokens`` by source component on each side.

    Activations are read from ``cache`` (anything indexable by hook name, such as an activation
    cache of a run on the same tokens) when given, else computed by running the model up to
    ``layer``. Tokens are unpadded prompts of one length. Memory is ``components^2 * batch * pos^2``: keep batches small on deep models.
    """
    layer, head = check_layer(model, layer), check_head(model, head)
    with torch.no_grad():
        activations = _activations(model, tokens, layer, cache)
        components, labels = residual_components(model, activations, layer)
        query = _read_by_head(model, components, activations, layer, head, "Q")
        key = _read_by_head(model, components, activations, layer, head, "K")
        scores = einops.einsum(
            query, key,
            "query_component batch query_pos d_head, key_component batch key_pos d_head "
            "-> query_component key_component batch query_pos key_pos",
        ) / model.cfg.attn_scale
        pos = scores.shape[-1]
        future = torch.ones(pos, pos, dtype=torch.bool, device=scores.device).triu(1)
        scores.masked_fill_(future, 0.0)
    return AttentionScoreDecomposition(scores, labels + ["bias"])


def residual_components(
    model: "HookedTransformer", activations: Mapping[str, Tensor], layer: int
) -> tuple[Float[Tensor, "component batch pos d_model"], list[str]]:
    """The terms that sum to ``blocks.{layer}.hook_resid_pre``, and their names."""
    embed = activations["hook_embed"]
    terms, labels = [embed, activations["hook_pos_embed"]], ["embed", "pos_embed"]
    for earlier in range(layer):
        z = activations[f"blocks.{earlier}.attn.hook_z"]
        per_head = einops.einsum(
            z, model.W_O[earlier], "batch pos head_index d_head, head_index d_head d_model -> head_index batch pos d_model"
        )
        terms.extend(per_head)
        labels.extend(f"L{earlier}H{h}" for h in range(model.cfg.n_heads))
        terms.append(model.blocks[earlier].attn.b_O.expand_as(embed))
        labels.append(f"L{earlier} attn bias")
        if not model.cfg.attn_only:
            terms.append(activations[f"blocks.{earlier}.hook_mlp_out"])
            labels.append(f"L{earlier} mlp")
    return torch.stack(terms), labels


def _read_by_head(
    model: "HookedTransformer",
    components: Float[Tensor, "component batch pos d_model"],
    activations: Mapping[str, Tensor],
    layer: int,
    head: int,
    side: str,
) -> Float[Tensor, "component_and_bias batch pos d_head"]:
    """Each component's share of the query (or key), then the bias term as one more component."""
    attn, layer_norm = model.blocks[layer].attn, model.blocks[layer].ln1
    weight, bias = getattr(attn, f"W_{side}")[head], getattr(attn, f"b_{side}")[head]
    if isinstance(layer_norm, LayerNormPre):
        components = components - components.mean(-1, keepdim=True)
        scale = activations[f"blocks.{layer}.ln1.hook_scale"]
        if scale.ndim == 4:  # split q/k/v inputs: one scale per head
            scale = scale[:, :, head]
        components = components / scale
    if isinstance(layer_norm, LayerNorm):
        components = components * layer_norm.w
        bias = bias + layer_norm.b @ weight
    shares = einops.einsum(components, weight, "component batch pos d_model, d_model d_head -> component batch pos d_head")
    return torch.cat([shares, bias.expand_as(shares[:1])])


def _activations(
    model: "HookedTransformer", tokens: Tensor, layer: int, cache: Mapping[str, Tensor] | None
) -> dict[str, Tensor]:
    names = ["hook_embed", "hook_pos_embed"]
    for earlier in range(layer):
        names.append(f"blocks.{earlier}.attn.hook_z")
        if not model.cfg.attn_only:
            names.append(f"blocks.{earlier}.hook_mlp_out")
    if model.cfg.normalization_type is not None:
        names.append(f"blocks.{layer}.ln1.hook_scale")
    if cache is not None:
        found, missing = {}, []
        for name in names:  # only __getitem__: works for a dict or any activation cache
            try:
                found[name] = cache[name]
            except KeyError:
                missing.append(name)
        if missing:
            raise KeyError(f"the cache lacks {missing}, which the decomposition of layer {layer} needs; cache them or pass cache=None")
        return found
    stored: dict[str, Tensor] = {}

    def store(activation: Tensor, hook) -> None:
        stored[hook.name] = activation

    model.run_with_hooks(tokens, stop_at_layer=layer + 1, fwd_hooks=[(names, store)])
    return stored
