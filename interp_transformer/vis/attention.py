"""Attention views: every head of a layer as a grid, and one head in detail (circuitsvis components).

Each takes a pattern tensor, a cache (any mapping with ``blocks.L.attn.hook_pattern`` keys,
such as an ``ActivationCache``), or a model with ``prompt=``::

    vis.attention_patterns(cache, tokens, layer=1)                 # grid of layer 1's heads
    vis.attention_heads(model, prompt="When Mary and John ...", layer=[0, 1])
    vis.attention_pattern(pattern, tokens, head=3)                 # one head, axes labelled

Token labels are short and never blank (``labels.visible_label``: a 5,000-character token is cut
to 24 characters with an ellipsis, a ``" "`` token shows as ``␣``); the exact token is in each
label's tooltip (the grid's buttons, the token strip under the detailed views).

Values are sent in thousandths (``decimals=3``: finer than a 256-level colour scale shows).
Past ``max_bytes`` of data a ``ViewSizeWarning`` says how far to ``downsample`` (merge blocks
of positions), narrow ``positions`` or pick ``heads``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from interp_transformer.vis.attention_data import (
    AttentionData,
    AttentionSource,
    LayerSpec,
    resolve_attention,
)
from interp_transformer.vis.circuitsvis_view import CircuitsVisView, tokens_for
from interp_transformer.vis.escaping import escape_html_text
from interp_transformer.vis.labels import visible_label
from interp_transformer.vis.view import DEFAULT_MAX_BYTES


def attention_patterns(
    source: AttentionSource,
    tokens: Sequence[str] | None = None,
    *,
    prompt: str | Sequence[str] | Tensor | None = None,
    layer: LayerSpec = None,
    heads: Sequence[int] | int | None = None,
    batch_index: int = 0,
    positions: slice | None = None,
    downsample: int = 1,
    head_names: Sequence[str] | None = None,
    title: str | None = None,
    decimals: int = 3,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> CircuitsVisView:
    """All heads (of one or more layers) as a grid of small patterns, with the tokens coloured by attention.

    ``source``: a pattern ``[head_index query_pos key_pos]`` (or ``[batch ...]``, picked by
    ``batch_index``), a cache, or a model (then ``prompt=`` is required and ``tokens`` defaults to
    the model's string tokens). ``layer``: an int, a list, or None for every layer in the cache or
    model. ``heads``: which heads of each layer. Hover a head to focus it, click a token to see
    what it attends to. (circuitsvis ``AttentionPatterns``.)
    """
    data = resolve_attention(source, tokens, prompt, layer, heads, batch_index, positions, downsample, head_names)
    labels = [visible_label(token) for token in data.tokens]
    props = {
        "tokens": tokens_for("AttentionPatterns", labels),
        "attention": _scaled(data.pattern, decimals),
        "headLabels": data.head_names,
    }
    view = CircuitsVisView(
        "attention_patterns", "AttentionPatterns", props, title or _default_title("Attention", data),
        data.notes, scaled={"attention": 10**decimals}, token_titles=data.tokens if labels != data.tokens else None,
    )
    view.warn_if_large(max_bytes, _how_to_shrink(data))
    return view


def attention_heads(
    source: AttentionSource,
    tokens: Sequence[str] | None = None,
    *,
    prompt: str | Sequence[str] | Tensor | None = None,
    layer: LayerSpec = None,
    heads: Sequence[int] | int | None = None,
    batch_index: int = 0,
    positions: slice | None = None,
    downsample: int = 1,
    head_names: Sequence[str] | None = None,
    mask_upper_tri: bool = True,
    title: str | None = None,
    decimals: int = 3,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> CircuitsVisView:
    """A thumbnail per head and the hovered (or clicked) head zoomed in with labelled axes and value tooltips.

    Same sources and selection arguments as ``attention_patterns``. The tokens are also listed
    under the chart exactly as given (the chart's axis labels drop whitespace).
    (circuitsvis ``AttentionHeads``.)
    """
    data = resolve_attention(source, tokens, prompt, layer, heads, batch_index, positions, downsample, head_names)
    props = {
        "tokens": tokens_for("AttentionHeads", [visible_label(token) for token in data.tokens]),
        "attention": _scaled(data.pattern, decimals),
        "attentionHeadNames": data.head_names,
        "maskUpperTri": mask_upper_tri,
    }
    view = CircuitsVisView(
        "attention_heads", "AttentionHeads", props, title or _default_title("Attention", data),
        data.notes, markup_after=token_strip_html(data.tokens), scaled={"attention": 10**decimals},
    )
    view.warn_if_large(max_bytes, _how_to_shrink(data))
    return view


def attention_pattern(
    source: AttentionSource,
    tokens: Sequence[str] | None = None,
    *,
    prompt: str | Sequence[str] | Tensor | None = None,
    layer: int | None = None,
    head: int | None = None,
    batch_index: int = 0,
    positions: slice | None = None,
    downsample: int = 1,
    mask_upper_tri: bool = True,
    title: str | None = None,
    decimals: int = 3,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> CircuitsVisView:
    """One head's pattern in detail: query positions down, key positions across, hover for values.

    ``head`` is required unless the pattern is a single ``[query_pos key_pos]`` matrix.
    (circuitsvis ``AttentionPattern``.)
    """
    if layer is not None and not isinstance(layer, int):
        raise TypeError(f"attention_pattern draws one head of one layer; layer must be an int, got {layer!r}")
    if head is not None and not isinstance(head, int):
        raise TypeError(f"attention_pattern draws one head; head must be an int, got {head!r} (use attention_heads for several)")
    data = resolve_attention(source, tokens, prompt, layer, head, batch_index, positions, downsample)
    if data.pattern.shape[0] != 1:
        raise ValueError(f"the pattern has {data.pattern.shape[0]} heads; pass head=<int> to choose one (or use attention_heads)")
    props = {
        "tokens": tokens_for("AttentionPattern", [visible_label(token) for token in data.tokens]),
        "attention": _scaled(data.pattern[0], decimals),
        "maskUpperTri": mask_upper_tri,
        "showAxisLabels": True,
    }
    view = CircuitsVisView(
        "attention_pattern", "AttentionPattern", props, title or f"Attention pattern {data.head_names[0]}",
        data.notes, markup_after=token_strip_html(data.tokens), scaled={"attention": 10**decimals},
        max_width_em=16 + 3 * len(data.tokens),  # about 3em per cell plus room for the (at most 24-character) axis labels
    )
    view.warn_if_large(max_bytes, _how_to_shrink(data))
    return view


def token_strip_html(tokens: Sequence[str]) -> str:
    """The tokens, one box per position (position number as a superscript): each box shows the
    token's ``visible_label`` and holds the exact token in its tooltip (``title``)."""
    boxes = "".join(
        f'<span class="itv-token-pos">{position}</span><span class="itv-token" data-pos="{position}" '
        f'title="{escape_html_text(token)}">{escape_html_text(visible_label(token))}</span>'
        for position, token in enumerate(tokens)
    )
    return f'<div class="itv-tokens" aria-label="tokens">{boxes}</div>'


def _scaled(pattern: Tensor, decimals: int) -> list:
    """Values as integers in units of 10**-decimals (the page divides them back)."""
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 6:
        raise ValueError(f"decimals must be an int from 0 to 6, got {decimals!r}")
    return torch.round(pattern.double() * 10**decimals).to(torch.int64).tolist()


def _default_title(what: str, data: AttentionData) -> str:
    names = data.head_names
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]} … {names[-1]} ({len(names)} heads)"
    return f"{what}: {shown}"


def _how_to_shrink(data: AttentionData) -> str:
    n_heads, n_pos, _ = data.pattern.shape
    return (
        f"it holds {n_heads} heads x {n_pos} x {n_pos} positions; pass downsample=2 (4x smaller), "
        "positions=slice(start, stop) or fewer heads="
    )
