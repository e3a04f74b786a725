"""Canonical hook names, their shapes in dimension words, and TransformerLens-style name shorthand.

Dimension words (the one vocabulary used across the package):

- ``batch``: prompts in a batch.
- ``pos``: token positions; ``query_pos`` / ``key_pos`` on the two sides of attention.
- ``head_index``: attention heads of one layer; ``d_head`` the width of one head.
- ``kv_head_index``: key/value heads under grouped-query attention (each shared by several query heads).
- ``d_model``: the residual stream width; ``d_mlp`` the MLP hidden width.
- ``d_vocab``: vocabulary size; ``layer`` a block index; ``component`` a residual-stream term.
- ``1``: a kept singleton axis (LayerNorm scales).
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp_transformer.config import TransformerConfig

RESID = ("batch", "pos", "d_model")
HEADS = ("batch", "pos", "head_index", "d_head")
ATTN = ("batch", "head_index", "query_pos", "key_pos")
MLP = ("batch", "pos", "d_mlp")
SPLIT = ("batch", "pos", "head_index", "d_model")
SCALE = ("batch", "pos", 1)
SPLIT_SCALE = ("batch", "pos", "head_index", 1)
KV_HEADS = ("batch", "pos", "kv_head_index", "d_head")  # keys and values under grouped-query attention
KV_HOOKS = frozenset({"attn.hook_k", "attn.hook_v", "attn.hook_rot_k"})

# Per-block hook names in forward order, each with its shape and the config switch it needs.
# The switch is a predicate name evaluated by ``_block_hook_enabled``.
# ``*.hook_normalized`` is the norm's value before its weight and bias, as in TransformerLens >= 3.0.
BLOCK_HOOKS: tuple[tuple[str, tuple, str], ...] = (
    ("hook_resid_pre", RESID, "always"),
    ("hook_q_input", SPLIT, "split_qkv"),
    ("hook_k_input", SPLIT, "split_qkv"),
    ("hook_v_input", SPLIT, "split_qkv"),
    ("ln1.hook_scale", SCALE, "ln_scale"),
    ("ln1.hook_normalized", RESID, "ln"),
    ("attn.hook_q", HEADS, "always"),
    ("attn.hook_k", HEADS, "always"),
    ("attn.hook_v", HEADS, "always"),
    ("attn.hook_rot_q", HEADS, "rotary"),
    ("attn.hook_rot_k", HEADS, "rotary"),
    ("attn.hook_attn_scores", ATTN, "always"),
    ("attn.hook_pattern", ATTN, "always"),
    ("attn.hook_z", HEADS, "always"),
    ("attn.hook_result", SPLIT, "attn_result"),
    ("hook_attn_out", RESID, "always"),
    ("hook_resid_mid", RESID, "sequential_mlp"),
    ("hook_mlp_in", RESID, "mlp_in"),
    ("ln2.hook_scale", SCALE, "mlp_ln_scale"),
    ("ln2.hook_normalized", RESID, "mlp_ln"),
    ("mlp.hook_pre", MLP, "mlp"),
    ("mlp.hook_pre_linear", MLP, "gated_mlp"),
    ("mlp.hook_post", MLP, "mlp"),
    ("hook_mlp_out", RESID, "mlp"),
    ("hook_resid_post", RESID, "always"),
)
TOP_HOOKS_BEFORE = (("hook_embed", RESID), ("hook_pos_embed", RESID))
LOGITS = ("batch", "pos", "d_vocab")
TOP_HOOKS_AFTER = (
    ("ln_final.hook_scale", SCALE, "ln_scale"),
    ("ln_final.hook_normalized", RESID, "ln"),
    ("unembed.hook_in", RESID, "always"),  # the final norm's output after its weight and bias
    ("unembed.hook_out", LOGITS, "always"),  # the logits; neither fires with return_type=None
)


def _block_hook_enabled(switch: str, cfg: "TransformerConfig") -> bool:
    has_ln = cfg.normalization_type is not None
    has_mlp = not cfg.attn_only
    return {
        "always": True,
        "split_qkv": cfg.use_split_qkv_input,
        "ln": has_ln,
        "ln_scale": has_ln,
        "attn_result": cfg.use_attn_result,
        "mlp": has_mlp,
        "sequential_mlp": has_mlp and not cfg.parallel_attn_mlp,  # parallel blocks have no resid_mid
        "rotary": cfg.positional_embedding_type == "rotary",
        "gated_mlp": has_mlp and cfg.gated_mlp,
        "mlp_in": has_mlp and cfg.use_hook_mlp_in,
        "mlp_ln": has_mlp and has_ln,
        "mlp_ln_scale": has_mlp and has_ln,
    }[switch]


# What each switch in BLOCK_HOOKS means, for the generated hook table (docs/hooks.md).
SWITCH_DESCRIPTIONS = {
    "always": "always",
    "not_rotary": "positions are embedded (not `positional_embedding_type='rotary'`)",
    "split_qkv": "`use_split_qkv_input`",
    "ln": "the model has a norm (`normalization_type` not None)",
    "ln_scale": "the model has a norm (`normalization_type` not None)",
    "attn_result": "`use_attn_result`",
    "mlp": "the model has MLPs (not `attn_only`)",
    "sequential_mlp": "MLPs in sequential blocks (not `parallel_attn_mlp`)",
    "rotary": "`positional_embedding_type='rotary'`",
    "gated_mlp": "`gated_mlp`",
    "mlp_in": "`use_hook_mlp_in`",
    "mlp_ln": "the model has MLPs and a norm",
    "mlp_ln_scale": "the model has MLPs and a norm",
}


def hook_shapes(cfg: "TransformerConfig") -> dict[str, tuple]:
    """Every hook name a model with this config has, in forward order, mapped to its dimension words."""
    shapes = dict(TOP_HOOKS_BEFORE[:1] if cfg.positional_embedding_type == "rotary" else TOP_HOOKS_BEFORE)
    grouped = cfg.n_key_value_heads not in (None, cfg.n_heads)
    for layer in range(cfg.n_layers):
        for name, dims, switch in BLOCK_HOOKS:
            if _block_hook_enabled(switch, cfg):
                if cfg.use_split_qkv_input and name.startswith("ln1."):
                    dims = SPLIT_SCALE if dims == SCALE else SPLIT
                if grouped and name in KV_HOOKS:
                    dims = KV_HEADS
                shapes[f"blocks.{layer}.{name}"] = dims
    for name, dims, switch in TOP_HOOKS_AFTER:
        if _block_hook_enabled(switch, cfg):
            shapes[name] = dims
    return shapes


POSITION_WORDS = ("pos", "query_pos")  # the axis a position slice cuts: a pattern's query positions


def position_axis_of(dims: tuple) -> int:
    """The position axis of an activation with these dimension words, counted from the end.

    ``[batch pos d_model] -> -2``, ``[batch pos head_index d_head] -> -3``, ``[batch head_index
    query_pos key_pos] -> -2`` (the query positions). Counted from the end so it also holds
    once the batch axis is removed.
    """
    for word in POSITION_WORDS:
        if word in dims:
            return dims.index(word) - len(dims)
    raise ValueError(f"the dimension words {dims} have no position axis ({' or '.join(POSITION_WORDS)})")


def default_hook_dims(hook_name: str) -> tuple | None:
    """Dimension words of ``hook_name`` under the default config switches; None for a name the table lacks.

    Without a config this cannot know that ``use_split_qkv_input`` gives ``ln1`` hooks a head
    axis or that grouped-query attention narrows ``hook_k``/``hook_v``: pass the config to
    ``hook_shapes`` wherever one is at hand.
    """
    for name, dims in TOP_HOOKS_BEFORE:
        if hook_name == name:
            return dims
    for name, dims, _ in TOP_HOOKS_AFTER:
        if hook_name == name:
            return dims
    block = re.fullmatch(r"blocks\.\d+\.(.+)", hook_name)
    if block is not None:
        for name, dims, _ in BLOCK_HOOKS:
            if block.group(1) == name:
                return dims
    return None


def markdown_hook_table() -> str:
    """The hook table as Markdown, in forward order: name, dimension words, when the hook exists.

    ``docs/hooks.md`` is this output; a test regenerates it, so the documentation cannot drift.
    """
    rows = ["| hook | shape | present when |", "| --- | --- | --- |"]
    entries = [(name, dims, "not_rotary" if name == "hook_pos_embed" else "always") for name, dims in TOP_HOOKS_BEFORE]
    entries += [("blocks.{L}." + name, dims, switch) for name, dims, switch in BLOCK_HOOKS]
    entries += list(TOP_HOOKS_AFTER)
    for name, dims, switch in entries:
        words = " ".join(str(word) for word in dims)
        rows.append(f"| `{name}` | `[{words}]` | {SWITCH_DESCRIPTIONS[switch]} |")
    notes = [
        "",
        f"With `use_split_qkv_input`, `ln1.hook_scale` is `[{' '.join(map(str, SPLIT_SCALE))}]` and "
        f"`ln1.hook_normalized` `[{' '.join(SPLIT)}]` (one copy per head). Under grouped-query attention "
        f"{', '.join(f'`{name}`' for name in sorted(KV_HOOKS))} are `[{' '.join(KV_HEADS)}]`.",
    ]
    return "\n".join(rows + notes) + "\n"


def concrete_shape(dims: tuple, cfg: "TransformerConfig", batch: int, pos: int) -> tuple[int, ...]:
    """Turn dimension words into sizes for a given batch and sequence length."""
    sizes = {
        "batch": batch,
        "pos": pos,
        "query_pos": pos,
        "key_pos": pos,
        "head_index": cfg.n_heads,
        "kv_head_index": cfg.n_key_value_heads or cfg.n_heads,
        "d_head": cfg.d_head,
        "d_model": cfg.d_model,
        "d_mlp": cfg.d_mlp,
        "d_vocab": cfg.d_vocab_out,  # only the logits have a vocabulary axis
        1: 1,
    }
    return tuple(sizes[d] for d in dims)


_ALIASES = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "key": "k",
    "query": "q",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_post": "post",
}
_ATTN_NAMES = {"q", "k", "v", "z", "result", "pattern", "attn_scores", "rot_q", "rot_k"}
_MLP_NAMES = {"pre", "post", "pre_linear"}
_LN_NAMES = {"scale", "normalized"}
_TOP_NAMES = {"embed", "pos_embed"}
# Every kind a hook name can have, from the table, so the two cannot drift apart.
_KINDS = {name.rsplit("hook_", 1)[-1] for name, _, _ in BLOCK_HOOKS} | _TOP_NAMES
_LAYER_TYPE_ALIASES = {"a": "attn", "attention": "attn", "m": "mlp", "b": "", "block": "", "blocks": ""}
# TransformerLens's compact form: "pattern3" -> ("pattern", 3), "scale4ln1" -> ("scale", 4, "ln1").
_COMPACT = re.compile(r"([a-z]+)(\d+)([a-z]?.*)")


class ActNameError(KeyError, ValueError):
    """A name ``get_act_name`` cannot expand. A KeyError, so ``key in cache`` stays False for it."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """Full hook name from TransformerLens shorthand.

    ``get_act_name("pattern", 3) -> "blocks.3.attn.hook_pattern"``,
    ``get_act_name("scale", 2, "ln1") -> "blocks.2.ln1.hook_scale"``,
    ``get_act_name("scale") -> "ln_final.hook_scale"``, ``get_act_name("pattern3")`` as
    ``get_act_name("pattern", 3)``. Full names pass through unchanged.

    An unknown kind (``"patern"``), a layer type that does not hold the kind, a per-block kind
    without a layer or a layer that is not a non-negative int raise ``ActNameError`` (both a
    ValueError and a KeyError) naming the closest valid kinds, instead of a name no model has.
    """
    if not isinstance(name, str):
        raise TypeError(f"get_act_name takes a hook kind such as 'pattern' or a full hook name, got {name!r}")
    if "." in name or name.startswith("hook_"):
        return name
    compact = _COMPACT.fullmatch(name) if layer is None and layer_type is None else None
    if compact is not None and compact.group(1) in _KINDS | set(_ALIASES):
        name, layer, layer_type = compact.group(1), int(compact.group(2)), compact.group(3) or None
    kind = _check_kind(name)
    _check_layer(kind, layer)
    natural = _natural_layer_type(kind, layer)
    if layer_type is not None:
        layer_type = _LAYER_TYPE_ALIASES.get(layer_type, layer_type)
        allowed = ("ln1", "ln2") if natural is None else (natural,)
        if layer_type not in allowed:
            where = " or ".join(repr(t) for t in allowed)
            raise ActNameError(f"get_act_name({name!r}, {layer}, {layer_type!r}): hook_{kind} lives in layer_type {where}")
    elif natural is None:
        raise ActNameError(f"get_act_name({name!r}, {layer}) needs layer_type 'ln1' or 'ln2' to pick a LayerNorm")
    else:
        layer_type = natural
    prefix = "" if layer is None else f"blocks.{layer}."
    middle = f"{layer_type}." if layer_type else ""
    return f"{prefix}{middle}hook_{kind}"


def _check_kind(name: str) -> str:
    kind = _ALIASES.get(name, name)
    if kind not in _KINDS:
        valid = sorted(_KINDS | set(_ALIASES))
        close = difflib.get_close_matches(name, valid, n=4, cutoff=0.5)
        hint = f"did you mean {close}? " if close else ""
        raise ActNameError(f"unknown activation name {name!r}; {hint}valid names: {valid} (or a full hook name)")
    return kind


def _check_layer(kind: str, layer: Any) -> None:
    if layer is None:
        if kind not in _TOP_NAMES | _LN_NAMES:
            raise ActNameError(f"{kind!r} is computed in every block: give a layer, e.g. get_act_name({kind!r}, 0)")
        return
    if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
        raise ActNameError(
            f"layer must be a non-negative int, got {layer!r}; get_act_name does not know the model, so it cannot "
            "count from the end (cache[name, -1] can)"
        )
    if kind in _TOP_NAMES:
        raise ActNameError(f"hook_{kind} is outside the blocks: call get_act_name({kind!r}) without a layer")


def _natural_layer_type(kind: str, layer: int | None) -> str | None:
    """The layer type a kind lives in; None for a block LayerNorm, where the caller must say which."""
    if kind in _ATTN_NAMES:
        return "attn"
    if kind in _MLP_NAMES:
        return "mlp"
    if kind in _LN_NAMES:
        return "ln_final" if layer is None else None
    return ""


def act_name_from_key(key: Any, n_layers: int) -> str:
    """Full hook name for a cache key: a name or shorthand string, or a ``(name, layer[, layer_type])`` tuple.

    A negative layer counts from the end (``("resid_pre", -1)`` is the last block's), as in
    TransformerLens's ``cache["resid_pre", -1]``.
    """
    if isinstance(key, str):
        return get_act_name(key)
    if not isinstance(key, tuple) or not key or not isinstance(key[0], str):
        raise TypeError(f"a cache key is a hook name or a (name, layer[, layer_type]) tuple, got {key!r}")
    if len(key) > 3:
        raise TypeError(f"a cache key tuple is (name, layer[, layer_type]), got {len(key)} items: {key!r}")
    name, layer, layer_type = (tuple(key) + (None, None))[:3]
    if layer is not None:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise TypeError(f"the layer in cache key {key!r} must be an int, got {type(layer).__name__}")
        if not -n_layers <= layer < n_layers:
            raise KeyError(f"layer {layer} in cache key {key!r} is out of range for a model with {n_layers} layers")
        layer = layer % n_layers
    return get_act_name(name, layer, layer_type)
