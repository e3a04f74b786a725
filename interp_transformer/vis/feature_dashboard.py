"""One sparse-dictionary feature on a page: its top-activating contexts as coloured tokens, logit table and activation histogram.

The view is static HTML with an inline SVG histogram: no bundle and no script of its own, so it
opens instantly and offline. Every token string is untrusted and enters the page once, through
``escape_html_text``: contexts show tokens exactly (whitespace kept, long tokens wrapped), the
logit table shows ``visible_label``s with the exact token in the tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Union

import torch

from interp_transformer.vis.escaping import escape_html_text
from interp_transformer.vis.labels import visible_label
from interp_transformer.vis.view import DEFAULT_MAX_BYTES, View

if TYPE_CHECKING:
    from interp_transformer.model import HookedTransformer
    from interp_transformer.sae.features import FeatureActivations
    from interp_transformer.sae.logit_effects import LogitEffects

Vocabulary = Union["HookedTransformer", Sequence[str], Callable[[int], str], None]
HISTOGRAM_WIDTH, HISTOGRAM_HEIGHT = 360, 120
COLOR = (37, 99, 235)  # the colour of the largest activation; lighter for smaller ones

_STYLE = """
.itv-fd-row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.itv-fd h4 { margin: 10px 0 4px; font-size: 13px; }
.itv-fd-stats { font-size: 12px; color: #333; }
.itv-fd-context { display: flex; gap: 8px; align-items: baseline; margin: 3px 0; font-size: 13px; }
.itv-fd-value { font-family: ui-monospace, monospace; min-width: 5em; text-align: right; color: #333; }
.itv-fd-where { font-size: 10px; color: #888; min-width: 6em; }
.itv-fd-text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace; min-width: 0; }
.itv-fd-tok { border-radius: 2px; }
.itv-fd-center { outline: 1px solid #111; }
.itv-fd-unknown { text-decoration: underline dotted #999; }
.itv-fd-label { white-space: pre; font-family: ui-monospace, monospace; }
.itv-fd-num { text-align: right; font-family: ui-monospace, monospace; }
.itv-fd-axis { display: flex; justify-content: space-between; width: 360px; font-size: 10px; color: #555; }
"""


class FeatureDashboardView(View):
    """A static view: its HTML is built here and holds no data block (``data_bytes`` is the markup's size)."""

    def __init__(self, markup: str, title: str | None, notes: tuple[str, ...]) -> None:
        super().__init__("feature_dashboard", None, title=title, notes=notes, markup_after=markup)
        self.markup_bytes = len(markup.encode("utf-8"))

    @property
    def data_bytes(self) -> int:
        return self.markup_bytes


def feature_dashboard(
    activations: "FeatureActivations",
    feature: int,
    *,
    logits: "LogitEffects | None" = None,
    vocab: Vocabulary = None,
    n_contexts: int | None = None,
    title: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> FeatureDashboardView:
    """A dashboard of ``feature`` from ``top_activating_contexts``'s result (and ``logit_effects``'s, for the logit table).

    ``vocab`` turns token ids into text: a model with a tokenizer, a list of token strings
    indexed by id, or a function; without it ids are shown as ``[id]``. ``n_contexts`` shows
    only the first contexts (default: all that were kept).
    """
    from interp_transformer.sae.features import FeatureActivations
    from interp_transformer.sae.logit_effects import LogitEffects

    if not isinstance(activations, FeatureActivations):
        raise TypeError(f"activations must be what top_activating_contexts returns, got {type(activations).__name__}")
    if logits is not None and not isinstance(logits, LogitEffects):
        raise TypeError(f"logits must be what logit_effects returns (or None), got {type(logits).__name__}")
    contexts = activations.contexts(feature)  # KeyError naming the analysed features
    if n_contexts is not None:
        if isinstance(n_contexts, bool) or not isinstance(n_contexts, int) or n_contexts < 1:
            raise ValueError(f"n_contexts must be a positive int or None, got {n_contexts!r}")
        contexts = contexts[:n_contexts]
    logit_row = logits.row(feature) if logits is not None else None
    ids = {token for context in contexts for token in context.tokens}
    if logit_row is not None:
        ids |= set(logits.top_tokens[logit_row].tolist()) | set(logits.bottom_tokens[logit_row].tolist())
    text_of = _token_texts(vocab, sorted(ids))
    row = activations.row(feature)
    largest = contexts[0].activation if contexts else 0.0
    sections = [_contexts_html(contexts, text_of, largest)]
    side = [_histogram_html(activations, row)]
    if logit_row is not None:
        side.insert(0, _logit_table_html(logits, logit_row, text_of))
    markup = (
        f"<style>{_STYLE}</style>\n<div class=\"itv-fd\">\n<div class=\"itv-fd-row\">{''.join(side)}</div>\n"
        f"{''.join(sections)}\n</div>"
    )
    fired = int(activations.n_firing[row])
    notes = (
        f"{activations.hook_name}: fires (activation > {activations.min_activation:g}) on {fired:,} of "
        f"{activations.n_tokens:,} tokens ({float(activations.firing_fraction[row]):.3%}); "
        f"max {largest:.4g}, mean when firing {float(activations.mean_firing_activation[row]) if fired else 0.0:.4g}",
    )
    view = FeatureDashboardView(markup, title if title is not None else f"Feature {feature}", notes)
    view.warn_if_large(max_bytes, "show fewer contexts (n_contexts=) or a smaller window")
    return view


def _token_texts(vocab: Vocabulary, ids: list[int]) -> dict[int, str]:
    if vocab is None:
        return {i: f"[{i}]" for i in ids}
    if hasattr(vocab, "to_str_tokens") and hasattr(vocab, "tokenizer"):
        if vocab.tokenizer is None:
            raise ValueError("the model has no tokenizer to decode token ids; pass vocab= a list of token strings (or leave it out to show ids)")
        return dict(zip(ids, vocab.to_str_tokens(torch.tensor(ids)))) if ids else {}
    if callable(vocab):
        texts = {i: vocab(i) for i in ids}
    elif isinstance(vocab, Sequence) and not isinstance(vocab, str):
        too_large = [i for i in ids if i >= len(vocab)]
        if too_large:
            raise ValueError(f"vocab has {len(vocab)} token strings but the dashboard shows token ids up to {max(too_large)}; pass the whole vocabulary")
        texts = {i: vocab[i] for i in ids}
    else:
        raise TypeError(f"vocab must be a model with a tokenizer, a list of token strings or a function id -> str, got {type(vocab).__name__}")
    for i, text in texts.items():
        if not isinstance(text, str):
            raise TypeError(f"vocab gave {type(text).__name__} {text!r} for token id {i}; it must give strings")
    return texts


def _contexts_html(contexts: list, text_of: dict[int, str], largest: float) -> str:
    if not contexts:
        return '<section class="itv-fd-contexts"><h4>Top activations</h4><p class="itv-note">this feature never fired</p></section>'
    rows = []
    for context in contexts:
        spans = []
        for index, (token, value) in enumerate(zip(context.tokens, context.activations)):
            classes = ["itv-fd-tok"] + (["itv-fd-center"] if index == context.center else [])
            if math.isnan(value):
                classes.append("itv-fd-unknown")
                style, shown = "", "not stored"
            else:
                alpha = min(max(value / largest, 0.0), 1.0) if largest > 0 else 0.0
                style, shown = f' style="background: rgba({COLOR[0]}, {COLOR[1]}, {COLOR[2]}, {alpha:.3f})"', f"{value:.4g}"
            tooltip = escape_html_text(f"{text_of[token]}\nactivation {shown}")
            spans.append(f'<span class="{" ".join(classes)}"{style} title="{tooltip}">{escape_html_text(text_of[token])}</span>')
        rows.append(
            f'<div class="itv-fd-context" data-sequence="{context.sequence}" data-position="{context.position}">'
            f'<span class="itv-fd-value">{context.activation:.4g}</span>'
            f'<span class="itv-fd-where">seq {context.sequence} pos {context.position}</span>'
            f'<span class="itv-fd-text">{"".join(spans)}</span></div>'
        )
    return f'<section class="itv-fd-contexts"><h4>Top activations</h4>{"".join(rows)}</section>'


def _logit_table_html(logits: "LogitEffects", row: int, text_of: dict[int, str]) -> str:
    def cells(tokens, values) -> list[str]:
        return [
            f'<td><span class="itv-fd-label" title="{escape_html_text(text_of[t])}">{escape_html_text(visible_label(text_of[t]))}</span></td>'
            f'<td class="itv-fd-num">{v:+.4g}</td>'
            for t, v in zip(tokens.tolist(), values.tolist())
        ]

    promoted = cells(logits.top_tokens[row], logits.top_values[row])
    suppressed = cells(logits.bottom_tokens[row], logits.bottom_values[row])
    body = "".join(f"<tr>{p}{s}</tr>" for p, s in zip(promoted, suppressed))
    where = "through the final norm's weights" if logits.through_final_norm else "W_dec @ W_U"
    return (
        f'<section class="itv-fd-logits"><h4>Logit effects ({where})</h4><table class="itv-table itv-fd-logit-table">'
        f'<tr><th colspan="2">promoted</th><th colspan="2">suppressed</th></tr>{body}</table></section>'
    )


def _histogram_html(activations: "FeatureActivations", row: int) -> str:
    counts = activations.histogram[row].tolist()
    width = float(activations.bin_width[row])
    if width == 0:
        return '<section class="itv-fd-histogram"><h4>Activation histogram</h4><p class="itv-note">this feature never fired</p></section>'
    tallest = max(counts)
    bar = HISTOGRAM_WIDTH / len(counts)
    bars = []
    for index, count in enumerate(counts):
        height = HISTOGRAM_HEIGHT * count / tallest
        tip = f"[{index * width:.4g}, {(index + 1) * width:.4g}): {count:,} activations"
        bars.append(
            f'<rect class="itv-fd-bar" x="{index * bar:.2f}" y="{HISTOGRAM_HEIGHT - height:.2f}" width="{max(bar - 1, 0.5):.2f}" '
            f'height="{height:.2f}" fill="rgb({COLOR[0]}, {COLOR[1]}, {COLOR[2]})" data-count="{count}"><title>{tip}</title></rect>'
        )
    return (
        '<section class="itv-fd-histogram"><h4>Activation histogram (firing activations; tallest bar '
        f'{tallest:,})</h4><svg width="{HISTOGRAM_WIDTH}" height="{HISTOGRAM_HEIGHT}" viewBox="0 0 {HISTOGRAM_WIDTH} '
        f'{HISTOGRAM_HEIGHT}" role="img" aria-label="activation histogram">{"".join(bars)}</svg>'
        f'<div class="itv-fd-axis"><span>0</span><span>{len(counts) * width:.4g}</span></div></section>'
    )
