"""Residual-stream analyses of an ActivationCache (mixed into the class), with TransformerLens's semantics and labels.

Layer arguments name *the residual stream entering a layer*: ``layer=L`` covers everything
written before block ``L`` reads it, ``layer=n_layers`` (or ``None``, or ``-1``) is the stream
entering the unembed. ``mlp_input=True`` moves the cut to block ``L``'s MLP input (adding its
attention). ``pos_slice`` takes one of ``slicing``'s slice inputs and is applied to the
position axis. ``apply_ln`` divides by the cached LayerNorm scale of the layer read next
(after centring), as TransformerLens does: a linear map, so stacks still sum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp_transformer import names, slicing

if TYPE_CHECKING:
    from interp_transformer.config import TransformerConfig
    from interp_transformer.activation_cache.logit_lens import LensLogits
    from interp_transformer.model import HookedTransformer

TokenSpec = Union[str, int, Int[Tensor, ""], Int[Tensor, "batch"], Int[Tensor, "batch pos"]]
Stack = Float[Tensor, "component *batch_and_pos d_model"]


class ResidualStreamAnalyses:
    """Mixin for ActivationCache: needs ``cache_dict``, ``model``, ``cfg``, ``has_batch_dim`` and ``__getitem__``."""

    cache_dict: dict[str, Tensor]
    model: "HookedTransformer | None"
    cfg: "TransformerConfig"
    has_batch_dim: bool

    def __getitem__(self, key: Any) -> Tensor:  # provided by ActivationCache
        raise NotImplementedError

    # ---------------------------------------------------------- stacks of streams
    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: slicing.SliceInput = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """The residual stream at each layer up to ``layer``: labels ``"{l}_pre"``, ``"{l}_mid"``, ``"final_post"``.

        ``incl_mid`` adds each earlier block's ``resid_mid``; ``mlp_input`` adds ``resid_mid`` of
        ``layer`` itself. With ``apply_ln`` and the unembed as target, each stream goes through
        the final LayerNorm with its own statistics (the logit lens); for an earlier target the
        cached scale of that layer's LayerNorm is used.
        """
        layer = self._stream_layer(layer, mlp_input)
        streams, labels = [], []
        for index in range(layer + 1):
            if index == self.cfg.n_layers:
                streams.append(self["resid_post", self.cfg.n_layers - 1])
                labels.append("final_post")
                continue
            streams.append(self["resid_pre", index])
            labels.append(f"{index}_pre")
            if (incl_mid and index < layer) or (mlp_input and index == layer):
                streams.append(self["resid_mid", index])
                labels.append(f"{index}_mid")
        stack = torch.stack([slicing.apply_slice(s, pos_slice, -2) for s in streams])
        if apply_ln:
            stack = self.apply_ln_to_stack(
                stack, layer, mlp_input=mlp_input, pos_slice=pos_slice, recompute_ln=layer == self.cfg.n_layers
            )
        return (stack, labels) if return_labels else stack

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: Literal["all", "mlp", "attn"] = "all",
        apply_ln: bool = False,
        pos_slice: slicing.SliceInput = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """The stream entering ``layer`` as the outputs that wrote it: ``embed``, ``pos_embed``, ``"{l}_attn_out"``, ``"{l}_mlp_out"``.

        ``mode`` keeps all of them, only ``"attn"`` or only ``"mlp"`` outputs. Sums to the stream
        when ``mode="all"`` and ``incl_embeds``.
        """
        if mode not in ("all", "mlp", "attn"):
            raise ValueError(f"mode must be 'all', 'mlp' or 'attn', got {mode!r}")
        layer = self._stream_layer(layer, mlp_input)
        incl_attn, incl_mlp = mode != "mlp", mode != "attn" and not self.cfg.attn_only
        parts, labels = [], []
        if incl_embeds:
            for name, label in self._embedding_parts():
                parts.append(self[name])
                labels.append(label)
        for index in range(layer):
            if incl_attn:
                parts.append(self["attn_out", index])
                labels.append(f"{index}_attn_out")
            if incl_mlp:
                parts.append(self["mlp_out", index])
                labels.append(f"{index}_mlp_out")
        if mlp_input and incl_attn:
            parts.append(self["attn_out", layer])
            labels.append(f"{layer}_attn_out")
        if parts:
            stack = torch.stack([slicing.apply_slice(p, pos_slice, -2) for p in parts])
        else:
            stack = self._empty_stack(pos_slice)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    # ------------------------------------------------------------------- heads
    def compute_head_results(self) -> None:
        """Store each layer's per-head results ``blocks.{l}.attn.hook_result`` computed from ``hook_z`` and ``W_O``.

        Use this only when the results themselves are wanted in the cache: ``stack_head_results``
        computes what it needs without storing it.
        """
        for index in range(self.cfg.n_layers):
            name = f"blocks.{index}.attn.hook_result"
            if name not in self.cache_dict:
                self.cache_dict[name] = self._head_results(index, None)

    def _head_results(self, layer: int, pos_slice: slicing.SliceInput) -> Float[Tensor, "*batch_and_pos head_index d_model"]:
        cached = self.cache_dict.get(f"blocks.{layer}.attn.hook_result")
        if cached is not None:
            return slicing.apply_slice(cached, pos_slice, -3)
        z = slicing.apply_slice(self["z", layer], pos_slice, -3)
        W_O = weight_like(require_model(self, "per-head results from hook_z").blocks[layer].attn.W_O, z)
        return torch.einsum("...hd,hdm->...hm", z, W_O)  # [... head_index d_head] x [head_index d_head d_model]

    def stack_head_results(
        self,
        layer: int | None = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: slicing.SliceInput = None,
        apply_ln: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """Every head's write to the residual stream before ``layer``, labelled ``"L{l}H{h}"``.

        Uses cached ``hook_result`` where present, else computes it from ``hook_z`` and ``W_O``.
        ``incl_remainder`` adds the rest of the stream (biases, embeddings, MLPs) as ``"remainder"``.
        """
        layer = self._stream_layer(layer, False)
        labels = [f"L{index}H{head}" for index in range(layer) for head in range(self.cfg.n_heads)]
        if layer:
            results = torch.cat([self._head_results(index, pos_slice) for index in range(layer)], dim=-2)
            stack = results.movedim(-2, 0)
        else:
            stack = self._empty_stack(pos_slice)
        if incl_remainder:
            stack = self._with_remainder(stack, layer, False, pos_slice)
            labels.append("remainder")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    def stack_activation(self, activation_name: str, layer: int | None = -1, sublayer_type: str | None = None) -> Tensor:
        """``activation_name`` of every layer before ``layer``, stacked on a new first axis."""
        layer = self._stream_layer(layer, False)
        return torch.stack([self[activation_name, index, sublayer_type] for index in range(layer)])

    # ----------------------------------------------------------------- neurons
    def get_neuron_results(
        self, layer: int, neuron_slice: slicing.SliceInput = None, pos_slice: slicing.SliceInput = None
    ) -> Float[Tensor, "*batch_and_pos d_mlp d_model"]:
        """Each MLP neuron's write to the residual stream in one layer: ``post[..., n] * W_out[n]`` (not cached)."""
        acts = slicing.apply_slice(self["post", layer], pos_slice, -2)
        acts = slicing.apply_slice(acts, neuron_slice, -1)
        W_out = require_model(self, "neuron results").blocks[layer].mlp.W_out
        W_out = slicing.apply_slice(weight_like(W_out, acts), neuron_slice, 0)
        return acts[..., None] * W_out

    def stack_neuron_results(
        self,
        layer: int | None,
        pos_slice: slicing.SliceInput = None,
        neuron_slice: slicing.SliceInput = None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
        *,
        mlp_input: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """Every neuron's write before ``layer``, labelled ``"L{l}N{n}"`` (memory: ``layer * d_mlp`` streams)."""
        if self.cfg.attn_only:
            raise ValueError("this model is attention-only (cfg.attn_only=True): it has no neurons to stack")
        layer = self._stream_layer(layer, mlp_input)
        if isinstance(slicing.to_index(neuron_slice), int):
            neuron_slice = [slicing.to_index(neuron_slice)]  # keep the neuron axis: layers are joined along it
        neurons = slicing.apply_slice(torch.arange(self.cfg.d_mlp), neuron_slice, 0).tolist()
        labels = [f"L{index}N{n}" for index in range(layer) for n in neurons]
        if layer:
            results = torch.cat([self.get_neuron_results(i, neuron_slice, pos_slice) for i in range(layer)], dim=-2)
            stack = results.movedim(-2, 0)
        else:
            stack = self._empty_stack(pos_slice)
        if incl_remainder:
            stack = self._with_remainder(stack, layer, mlp_input, pos_slice)
            labels.append("remainder")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    # --------------------------------------------------------- full decomposition
    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: slicing.SliceInput = None,
        return_labels: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """The stream entering ``layer`` split into every head, every neuron (or MLP layer), embed, pos_embed and ``"bias"``.

        Order: heads ``"L{l}H{h}"``, then neurons ``"L{l}N{n}"`` (or ``"{l}_mlp_out"`` with
        ``expand_neurons=False``), ``"embed"``, ``"pos_embed"``, ``"bias"`` (every attention
        ``b_O``, plus the MLP ``b_out`` when neurons are expanded). Sums to the stream.
        """
        layer = self._stream_layer(layer, mlp_input)
        heads, labels = self.stack_head_results(layer + int(mlp_input), pos_slice=pos_slice, return_labels=True)
        parts = [heads]
        if not self.cfg.attn_only and layer > 0:
            if expand_neurons:
                neurons, neuron_labels = self.stack_neuron_results(layer, pos_slice=pos_slice, return_labels=True)
            else:
                neurons, neuron_labels = self.decompose_resid(
                    layer, mlp_input=mlp_input, mode="mlp", pos_slice=pos_slice, incl_embeds=False, return_labels=True
                )
            parts.append(neurons)
            labels = labels + neuron_labels
        for name, label in self._embedding_parts():
            parts.append(slicing.apply_slice(self[name], pos_slice, -2)[None])
            labels.append(label)
        bias = accumulated_bias(require_model(self, "the bias term"), layer, mlp_input, include_mlp_biases=expand_neurons)
        parts.append(weight_like(bias, heads).expand((1,) + heads.shape[1:]))
        labels.append("bias")
        stack = torch.cat(parts)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    # --------------------------------------------------------------- layer norm
    def apply_ln_to_stack(
        self,
        residual_stack: Stack,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: slicing.SliceInput = None,
        batch_slice: slicing.SliceInput = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> Stack:
        """Treat each stack entry as the input to ``layer``'s LayerNorm: centre, then divide by the cached scale.

        The scale is the one the whole stream got, so the map is linear and the entries still sum
        to the normalised stream (less the LayerNorm's weight and bias). ``pos_slice`` /
        ``batch_slice`` say which positions / prompts the stack already holds. With
        ``recompute_ln`` and the unembed as target, each entry instead goes through the final
        LayerNorm (weights included) with its own statistics. Models without LayerNorm: unchanged.
        """
        if self.cfg.normalization_type is None:
            return residual_stack
        layer = self._stream_layer(layer, mlp_input)
        if has_batch_dim:
            residual_stack = slicing.apply_slice(residual_stack, batch_slice, 1)
        if recompute_ln and layer == self.cfg.n_layers:
            return self._final_layer_norm(residual_stack)
        centred = residual_stack - residual_stack.mean(dim=-1, keepdim=True)
        if layer == self.cfg.n_layers:
            scale = self["ln_final.hook_scale"]
        else:
            scale = self["scale", layer, "ln2" if mlp_input else "ln1"]
        scale = slicing.apply_slice(scale, pos_slice, -2)
        if self.has_batch_dim:
            scale = slicing.apply_slice(scale, batch_slice, 0)
        return centred / scale

    def _final_layer_norm(self, stack: Tensor) -> Tensor:
        weight = bias = None
        if self.cfg.normalization_type == "LN":
            ln_final = require_model(self, "the final LayerNorm's weights").ln_final
            weight, bias = weight_like(ln_final.w, stack), weight_like(ln_final.b, stack)
        return F.layer_norm(stack, stack.shape[-1:], weight, bias, self.cfg.layer_norm_eps)

    # ------------------------------------------------------------------ logits
    def logit_attrs(
        self,
        residual_stack: Stack,
        tokens: TokenSpec,
        incorrect_tokens: TokenSpec | None = None,
        pos_slice: slicing.SliceInput = None,
        batch_slice: slicing.SliceInput = None,
        has_batch_dim: bool = True,
    ) -> Float[Tensor, "component *batch_and_pos"]:
        """Each entry's direct contribution to the logit of ``tokens`` (minus ``incorrect_tokens``'s).

        The stack goes through ``apply_ln_to_stack`` for the unembed (cached final scale), then
        is dotted with ``W_U[:, token]``. For a full decomposition the entries sum to the
        logit less ``b_U``, exactly when the final LayerNorm's weight is folded into ``W_U``
        (``w = 1, b = 0``, or ``LNPre``); otherwise up to that weight and bias, which this
        (like TransformerLens) leaves out. ``tokens``: a str, an int, or a tensor ``[batch]``
        (one per prompt, for every position) or ``[batch pos]`` (one per prompt and position).
        """
        model = require_model(self, "W_U")
        directions = tokens_to_residual_directions(model, tokens)
        if incorrect_tokens is not None:
            if _token_shape(model, tokens) != _token_shape(model, incorrect_tokens):
                raise ValueError(
                    f"tokens and incorrect_tokens must have the same shape, got {_token_shape(model, tokens)} "
                    f"and {_token_shape(model, incorrect_tokens)}"
                )
            directions = directions - tokens_to_residual_directions(model, incorrect_tokens)
        scaled = self.apply_ln_to_stack(
            residual_stack, -1, pos_slice=pos_slice, batch_slice=batch_slice, has_batch_dim=has_batch_dim
        )
        directions = weight_like(directions, scaled)
        batch_kept = has_batch_dim and slicing.keeps_axis(batch_slice)
        if batch_kept and scaled.ndim == 4 and directions.ndim == 2 and directions.shape[0] == scaled.shape[1]:
            directions = directions[:, None]  # one token per prompt: the same for every position
        try:
            return (scaled * directions).sum(dim=-1)
        except RuntimeError as error:
            raise ValueError(
                f"token directions of shape {tuple(directions.shape)} do not fit the stack {tuple(scaled.shape)}; "
                "pass tokens as a scalar, [batch] or [batch pos] matching the stack's slices"
            ) from error

    def logit_lens(
        self, layer: int | None = None, incl_mid: bool = False, pos_slice: slicing.SliceInput = None
    ) -> "LensLogits":
        """Logits read off each accumulated stream through the final LayerNorm and unembed (see ``logit_lens``)."""
        from interp_transformer.activation_cache.logit_lens import logit_lens

        return logit_lens(self, layer=layer, incl_mid=incl_mid, pos_slice=pos_slice)

    def logit_lens_top_tokens(
        self, k: int = 5, layer: int | None = None, incl_mid: bool = False, pos_slice: slicing.SliceInput = -1
    ) -> Any:
        """The top ``k`` tokens each accumulated stream predicts, as a DataFrame (see ``logit_lens``)."""
        from interp_transformer.activation_cache.logit_lens import logit_lens_top_tokens

        return logit_lens_top_tokens(self, k=k, layer=layer, incl_mid=incl_mid, pos_slice=pos_slice)

    # ---------------------------------------------------------------- helpers
    def _stream_layer(self, layer: int | None, mlp_input: bool) -> int:
        """``layer`` as an index in ``[0, n_layers]``; None and -1 mean ``n_layers`` (the unembed's input)."""
        n = self.cfg.n_layers
        if layer is None:
            layer = n
        if not isinstance(layer, int) or isinstance(layer, bool) or not -(n + 1) <= layer <= n:
            raise ValueError(f"layer must be an int in [0, {n}] (or None / -1 for the unembed's input), got {layer!r}")
        layer = layer + n + 1 if layer < 0 else layer
        if mlp_input and layer == n:
            raise ValueError(f"mlp_input=True needs a block to read the stream, but layer {layer} is the unembed")
        return layer

    def _embedding_parts(self) -> list[tuple[str, str]]:
        """The cached embeddings that are part of the residual stream (a shortformer's positions are not)."""
        parts = [("hook_embed", "embed")]
        if getattr(self.cfg, "positional_embedding_type", "standard") != "shortformer":
            parts.append(("hook_pos_embed", "pos_embed"))
        return [(name, label) for name, label in parts if name in self.cache_dict]

    def _stream_into(self, layer: int, mlp_input: bool, pos_slice: slicing.SliceInput) -> Tensor:
        if mlp_input:
            stream = self["resid_mid", layer]
        elif layer == 0:
            stream = self["resid_pre", 0]
        elif f"blocks.{layer - 1}.hook_resid_post" in self.cache_dict or layer == self.cfg.n_layers:
            stream = self["resid_post", layer - 1]
        else:
            stream = self["resid_pre", layer]
        return slicing.apply_slice(stream, pos_slice, -2)

    def _with_remainder(self, stack: Tensor, layer: int, mlp_input: bool, pos_slice: slicing.SliceInput) -> Tensor:
        stream = self._stream_into(layer, mlp_input, pos_slice)
        return torch.cat([stack, (stream - stack.sum(dim=0))[None]])

    def _empty_stack(self, pos_slice: slicing.SliceInput) -> Tensor:
        shapes = names.hook_shapes(self.cfg)
        for name, value in self.cache_dict.items():
            if shapes.get(name) == names.RESID:  # any [batch pos d_model] activation gives the stack's shape
                like = slicing.apply_slice(value, pos_slice, -2)
                return like.new_zeros((0,) + like.shape)
        raise KeyError("an empty stack needs the shape of a residual-stream activation, but none is cached")


def require_model(cache: "ResidualStreamAnalyses", what: str) -> "HookedTransformer":
    """The model attached to ``cache``; ValueError naming ``what`` needed it when the cache has none."""
    if cache.model is None:
        raise ValueError(
            f"{what} needs the model's weights, but this cache has no model attached; "
            "load it with ActivationCache.load(path, model=model)"
        )
    return cache.model


def weight_like(weight: Tensor, like: Tensor) -> Tensor:
    """A weight detached and moved to the activations' device and dtype (the cache may have been moved)."""
    return weight.detach().to(device=like.device, dtype=like.dtype)


def accumulated_bias(
    model: "HookedTransformer", layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
) -> Float[Tensor, "d_model"]:
    """Sum of the output biases written before ``layer`` (attention ``b_O``, and MLP ``b_out`` if asked)."""
    total = torch.zeros(model.cfg.d_model, dtype=model.cfg.dtype, device=model.W_E.device)
    for block in model.blocks[:layer]:
        total = total + block.attn.b_O.detach()
        if include_mlp_biases and not model.cfg.attn_only:
            total = total + block.mlp.b_out.detach()
    if mlp_input:
        total = total + model.blocks[layer].attn.b_O.detach()
    return total


def tokens_to_residual_directions(model: "HookedTransformer", tokens: TokenSpec) -> Float[Tensor, "*token_shape d_model"]:
    """The unembedding column(s) ``W_U[:, token]`` for a str, an int or a tensor of token ids."""
    W_U = model.W_U.detach()
    if isinstance(tokens, str):
        tokens = model.to_single_token(tokens)
    if isinstance(tokens, bool) or not isinstance(tokens, (int, Tensor)):
        raise TypeError(f"tokens must be a str, an int or an integer tensor, got {type(tokens).__name__}")
    if isinstance(tokens, Tensor):
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise TypeError(f"token tensors must hold integer ids, got dtype {tokens.dtype}")
        if tokens.numel() == 1:
            tokens = int(tokens.item())
    ids = torch.as_tensor(tokens)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= W_U.shape[1]):
        raise ValueError(f"token ids must be in [0, d_vocab_out={W_U.shape[1]}), got {ids.min().item()}..{ids.max().item()}")
    if isinstance(tokens, int):
        return W_U[:, tokens]
    return W_U[:, tokens.to(W_U.device)].movedim(0, -1)


def _token_shape(model: "HookedTransformer", tokens: TokenSpec) -> tuple[int, ...]:
    if isinstance(tokens, Tensor) and tokens.numel() > 1:
        return tuple(tokens.shape)
    return ()
