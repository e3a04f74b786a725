"""A view drawn by one circuitsvis React component from the locally inlined bundle.

What circuitsvis does with token text, per component (read from its React source, v1.43):

- ``AttentionPatterns`` (token buttons), ``ColoredTokens``, ``TextNeuronActivations`` (which uses
  ColoredTokens) and ``TopkTokens`` (table cells) put the token into ``innerHTML`` after
  replacing whitespace with ``&nbsp;``: a ``<s>`` token becomes an element and vanishes, an
  ``<img onerror>`` token runs. These get ``circuitsvis_token_html`` tokens. Their hover tooltips
  show the same string as text, which the page runtime decodes back.
- ``AttentionHeads`` and ``AttentionPattern`` draw tokens only on a chart.js canvas (literal
  text, whitespace removed from axis labels); they get the tokens unchanged.

The attention views pass short labels (``labels.visible_label``) rather than the tokens; the
exact tokens go in ``token_titles``, which the page runtime puts in each token element's
``title`` attribute (set through the DOM, so never parsed as HTML).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interp_transformer.vis.bundle import CIRCUITSVIS
from interp_transformer.vis.escaping import circuitsvis_token_html
from interp_transformer.vis.view import View

TOKENS_AS_HTML = frozenset({"AttentionPatterns", "ColoredTokens", "TextNeuronActivations", "TopkTokens"})
TOKENS_AS_CANVAS_TEXT = frozenset({"AttentionHeads", "AttentionPattern"})
# The elements, in position order, that show one token each (read from the circuitsvis source, v1.43).
TOKEN_ELEMENTS = {"AttentionPatterns": "button"}


def tokens_for(component: str, tokens: Sequence[str]) -> list[str]:
    """Token strings prepared for ``component`` so that they display literally."""
    if component in TOKENS_AS_HTML:
        return [circuitsvis_token_html(token) for token in tokens]
    if component in TOKENS_AS_CANVAS_TEXT:
        return list(tokens)
    raise KeyError(f"no token handling known for circuitsvis component {component!r}; add it to circuitsvis_view.py after reading its source")


class CircuitsVisView(View):
    bundles = (CIRCUITSVIS,)

    def __init__(
        self,
        kind: str,
        component: str,
        props: dict[str, Any],
        title: str | None = None,
        notes: Sequence[str] = (),
        markup_after: str = "",
        scaled: dict[str, int] | None = None,
        max_width_em: float | None = None,
        token_titles: Sequence[str] | None = None,
    ) -> None:
        """``props`` go to the component as given (tokens already through ``tokens_for``).
        ``scaled`` names props sent as integers: ``{"attention": 1000}`` means thousandths.
        ``token_titles`` (one per token) become the tooltips of the component's token elements."""
        spec: dict[str, Any] = {
            "library": "circuitsvis",
            "component": component,
            "props": props,
            "scaled": scaled or {},
            "decodeTooltips": component in TOKENS_AS_HTML,
        }
        if token_titles is not None:
            if component not in TOKEN_ELEMENTS:
                raise KeyError(f"no token elements known for circuitsvis component {component!r}; known: {sorted(TOKEN_ELEMENTS)}")
            spec["tokenTitles"] = {"selector": TOKEN_ELEMENTS[component], "texts": list(token_titles)}
        super().__init__(kind, spec, title=title, notes=tuple(notes), markup_after=markup_after, max_width_em=max_width_em)
        self.component = component
