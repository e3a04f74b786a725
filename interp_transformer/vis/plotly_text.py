"""Text for plotly labels, titles and hover templates, shown literally.

plotly.js reads label text as a small HTML subset (``<b>``, ``<br>``, ``<a href>``, entities), so
``<b>`` in a token would turn bold. Escaping ``&``, ``<`` and ``>`` makes it print as written.
SVG text drops newlines, so line breaks and tabs are spelled ``\\n``, ``\\r``, ``\\t``.
"""

from __future__ import annotations

from interp_transformer.vis.escaping import NUL_STAND_IN

_VISIBLE = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": NUL_STAND_IN}


def plotly_label(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for char, shown in _VISIBLE.items():
        text = text.replace(char, shown)
    return text
