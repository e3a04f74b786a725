"""Path patching (Wang et al. 2022, "Interpretability in the Wild", IOI): the effect of a sender on chosen receivers only.

Run the target prompts (Wang et al.'s x_orig, the clean prompts). Replace a sender's output
(an attention head's, an MLP's, or an embedding's) with its value on the source prompts (x_new,
the corrupted prompts), freeze every other head and MLP at its target value, and record the
inputs this gives the receivers: heads' query, key or value inputs, or the final residual stream.
Then rerun the target with only those receiver inputs patched, letting everything after them
recompute, and score the metric. The result, per sender, measures the paths sender -> receiver.

With everything else frozen, a receiver's input is the target's residual stream plus the
sender's change ``source_out - target_out``, passed through the receiver's LayerNorm and
projection; that is computed directly here (no frozen forward is needed), and the rerun starts
at the first receiver's layer with many senders per forward (see ``sweep.py``). A sender reaches
a receiver only in a later layer; a sender with no path leaves the metric at its unpatched value.
A group of senders (a tuple) is patched together and gives one result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from interp_transformer.patching.results import PatchingResult
from interp_transformer.patching.sites import EMBEDDING_LAYER, Patch, PatchLocation
from interp_transformer.patching.sweep import check_same_shape, check_tokens, grid_result, patch_locations

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer

Metric = Callable[[Tensor], Tensor]
FINAL_RESIDUAL = "final_residual"
RECEIVER_INPUTS = ("q", "k", "v")


@dataclass(frozen=True)
class Sender:
    """A component whose output is patched: ``Sender("head", 3, 0)``, ``Sender("mlp", 2)``, ``Sender("embed")``, ``Sender("pos_embed")``."""

    kind: Literal["head", "mlp", "embed", "pos_embed"]
    layer: int = EMBEDDING_LAYER
    head: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "head":
            return f"L{self.layer}H{self.head}"
        return f"MLP{self.layer}" if self.kind == "mlp" else self.kind

    @property
    def hook_name(self) -> str:
        if self.kind == "head":
            return f"blocks.{self.layer}.attn.hook_z"
        return f"blocks.{self.layer}.hook_mlp_out" if self.kind == "mlp" else f"hook_{self.kind}"


@dataclass(frozen=True)
class Receiver:
    """One head's query, key or value input: ``Receiver(layer, head, "v")``."""

    layer: int
    head: int
    input: Literal["q", "k", "v"]


SenderGroup = Union[Sender, Sequence[Sender]]
Receivers = Union[Sequence[Receiver], Literal["final_residual"]]


def every_head(model: "HookedTransformer") -> list[Sender]:
    return [Sender("head", layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def every_component(model: "HookedTransformer") -> list[Sender]:
    """Embeddings, then each layer's heads and MLP: every term of the residual stream except biases."""
    senders = [Sender("embed")]
    if model.cfg.positional_embedding_type == "standard":
        senders.append(Sender("pos_embed"))
    for layer in range(model.cfg.n_layers):
        senders += [Sender("head", layer, head) for head in range(model.cfg.n_heads)]
        if not model.cfg.attn_only:
            senders.append(Sender("mlp", layer))
    return senders


def path_patch(
    model: "HookedTransformer",
    target_tokens: Tensor,
    source_tokens: Tensor,
    metric: Metric,
    senders: Sequence[SenderGroup],
    receivers: Receivers = FINAL_RESIDUAL,
    **options: Any,
) -> PatchingResult:
    """The metric with each sender's (or sender group's) paths to ``receivers`` patched: ``[sender]``.

    ``receivers`` is ``"final_residual"`` (paths straight to the logits) or a list of ``Receiver``s.
    ``options`` are ``sweep.patch_locations``'s keywords (``memory_budget``, ``progress``, ...).
    """
    groups = [_as_group(model, group) for group in senders]
    values = _path_patch_values(model, target_tokens, source_tokens, metric, groups, receivers, options)
    labels = ["+".join(sender.label for sender in group) for group in groups]
    result = grid_result(model, target_tokens, values, (len(groups),), ("sender",), title="path patching")
    return PatchingResult(result.values, result.axes, {**result.labels, "sender": labels}, result.value_name, result.title)


def path_patch_heads(
    model: "HookedTransformer",
    target_tokens: Tensor,
    source_tokens: Tensor,
    metric: Metric,
    receivers: Receivers = FINAL_RESIDUAL,
    **options: Any,
) -> PatchingResult:
    """``path_patch`` with every attention head as a sender: ``[layer head_index]``."""
    groups = [(sender,) for sender in every_head(model)]
    values = _path_patch_values(model, target_tokens, source_tokens, metric, groups, receivers, options)
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    return grid_result(model, target_tokens, values, shape, ("layer", "head_index"), title="path patching from each head")


def _path_patch_values(
    model: "HookedTransformer",
    target_tokens: Tensor,
    source_tokens: Tensor,
    metric: Metric,
    groups: list[tuple[Sender, ...]],
    receivers: Receivers,
    options: dict,
) -> Tensor:
    target_tokens = check_tokens(model, target_tokens, "target_tokens")
    source_tokens = check_tokens(model, source_tokens, "source_tokens")
    check_same_shape(source_tokens, target_tokens)
    receivers = _check_receivers(model, receivers)
    runs = _SenderRuns(model, target_tokens, source_tokens, groups, receivers, options.get("attention_mask"))
    locations = [runs.location(group) for group in groups]
    options.setdefault("description", "path patching")
    return patch_locations(model, target_tokens, None, metric, locations, **options)


class _SenderRuns:
    """Target and source activations of the senders, and the receiver inputs each sender group produces."""

    def __init__(self, model, target_tokens, source_tokens, groups, receivers, attention_mask) -> None:
        self.model, self.receivers = model, receivers
        n_layers = model.cfg.n_layers
        sender_hooks = {sender.hook_name for group in groups for sender in group}
        resid_hooks = {f"blocks.{n_layers - 1}.hook_resid_post"}
        for r in self._head_receivers():
            resid_hooks |= {f"blocks.{r.layer}.hook_resid_pre", self._receiver_hook(r)}
        if model.cfg.positional_embedding_type == "shortformer":
            resid_hooks.add("hook_pos_embed")
        with torch.no_grad():
            _, self.target = model.run_with_cache(
                target_tokens, names_filter=sorted(sender_hooks | resid_hooks), attention_mask=attention_mask
            )
            _, self.source = model.run_with_cache(source_tokens, names_filter=sorted(sender_hooks), attention_mask=attention_mask)

    def _head_receivers(self) -> list[Receiver]:
        return [] if self.receivers == FINAL_RESIDUAL else list(self.receivers)

    def delta(self, sender: Sender) -> Float[Tensor, "batch pos d_model"]:
        """What the sender adds to the residual stream on the source prompts minus on the target prompts."""
        change = self.source[sender.hook_name] - self.target[sender.hook_name]
        if sender.kind != "head":
            return change
        return change[:, :, sender.head] @ self.model.blocks[sender.layer].attn.W_O[sender.head]

    def delta_before(self, group: tuple[Sender, ...], layer: int) -> Tensor | None:
        """The summed change from the group's senders that write before ``layer`` (None if none do)."""
        changes = [self.delta(sender) for sender in group if sender.layer < layer]
        return torch.stack(changes).sum(0) if changes else None

    def location(self, group: tuple[Sender, ...]) -> PatchLocation:
        n_layers = self.model.cfg.n_layers
        if self.receivers == FINAL_RESIDUAL:
            final = f"blocks.{n_layers - 1}.hook_resid_post"
            return PatchLocation((Patch(final, (), value=lambda: self.target[final] + self.delta_before(group, n_layers)),))
        patches = [
            Patch(self._receiver_hook(r), (slice(None), r.head), value=self._receiver_value(group, r))
            for r in self.receivers
            if any(sender.layer < r.layer for sender in group)
        ]
        if not patches:  # no path: patching a receiver with its own target value changes nothing
            first = self.receivers[0]
            patches = [
                Patch(
                    self._receiver_hook(first),
                    (slice(None), first.head),
                    value=self.target[self._receiver_hook(first)][:, :, first.head],
                )
            ]
        return PatchLocation(tuple(patches))

    @staticmethod
    def _receiver_hook(receiver: Receiver) -> str:
        return f"blocks.{receiver.layer}.attn.hook_{receiver.input}"

    def _receiver_value(self, group: tuple[Sender, ...], receiver: Receiver) -> Callable[[], Tensor]:
        def compute() -> Tensor:
            block = self.model.blocks[receiver.layer]
            resid = self.target[f"blocks.{receiver.layer}.hook_resid_pre"] + self.delta_before(group, receiver.layer)
            normalized = block.ln1(resid)
            if self.model.cfg.positional_embedding_type == "shortformer" and receiver.input != "v":
                normalized = normalized + self.target["hook_pos_embed"]
            attn = block.attn
            weight, bias = {"q": (attn.W_Q, attn.b_Q), "k": (attn.W_K, attn.b_K), "v": (attn.W_V, attn.b_V)}[receiver.input]
            return normalized @ weight[receiver.head] + bias[receiver.head]

        return compute


def _as_group(model: "HookedTransformer", group: SenderGroup) -> tuple[Sender, ...]:
    senders = (group,) if isinstance(group, Sender) else tuple(group)
    if not senders:
        raise ValueError("an empty sender group patches nothing; remove it")
    cfg = model.cfg
    for sender in senders:
        if not isinstance(sender, Sender):
            raise TypeError(
                f"senders are Sender objects (Sender('head', layer, head), Sender('mlp', layer), Sender('embed')), got {sender!r}"
            )
        if sender.kind not in ("head", "mlp", "embed", "pos_embed"):
            raise ValueError(f"unknown sender kind {sender.kind!r}; use 'head', 'mlp', 'embed' or 'pos_embed'")
        if sender.kind in ("head", "mlp") and not 0 <= sender.layer < cfg.n_layers:
            raise ValueError(f"sender {sender.label} is out of range: the model has layers 0..{cfg.n_layers - 1}")
        if sender.kind == "head" and not (sender.head is not None and 0 <= sender.head < cfg.n_heads):
            raise ValueError(f"sender head {sender.head} is out of range: layers have heads 0..{cfg.n_heads - 1}")
        if sender.kind == "mlp" and cfg.attn_only:
            raise ValueError("this model is attention-only: it has no MLP senders")
        if sender.kind == "pos_embed" and cfg.positional_embedding_type == "shortformer":
            raise ValueError(
                "a shortformer model adds positions to queries and keys, not to the residual stream: pos_embed cannot be a sender"
            )
    return senders


def _check_receivers(model: "HookedTransformer", receivers: Receivers) -> Receivers:
    if isinstance(receivers, str):
        if receivers != FINAL_RESIDUAL:
            raise ValueError(
                f"receivers must be {FINAL_RESIDUAL!r} or a list of Receiver(layer, head, 'q'|'k'|'v'), got {receivers!r}"
            )
        return receivers
    receivers = list(receivers)
    if not receivers:
        raise ValueError(f"no receivers given; pass Receiver(layer, head, 'q'|'k'|'v') objects or {FINAL_RESIDUAL!r}")
    for receiver in receivers:
        if not isinstance(receiver, Receiver):
            raise TypeError(f"receivers must be Receiver(layer, head, input) objects, got {receiver!r}")
        if receiver.input not in RECEIVER_INPUTS:
            raise ValueError(f"a receiver's input is one of {RECEIVER_INPUTS}, got {receiver.input!r}")
        if not (0 <= receiver.layer < model.cfg.n_layers and 0 <= receiver.head < model.cfg.n_heads):
            raise ValueError(
                f"receiver {receiver} is out of range: layers 0..{model.cfg.n_layers - 1}, heads 0..{model.cfg.n_heads - 1}"
            )
    return receivers
