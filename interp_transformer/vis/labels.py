"""Short, visible labels for token positions (attention view axes, token buttons, heatmap ticks).

A label must fit an axis and never be invisible, so ``visible_label``:

- spells line breaks and tabs as ``\\n``, ``\\r``, ``\\t`` (as plotly ticks always have);
- shows a token made only of whitespace with a visible mark per character (``␣`` for a space),
  so ``" "`` and ``"   "`` do not become empty boxes; spaces next to other text stay spaces;
- cuts anything longer than ``LABEL_CHARS`` characters to ``LABEL_CHARS - 1`` plus ``…``.

The result is plain text: each view escapes it once for the place it lands, and keeps the
exact token where the user can reach it (a tooltip, the hover text).
"""

from __future__ import annotations

LABEL_CHARS = 24
ELLIPSIS = "…"
SPACE_MARK = "\u2423"  # ␣ OPEN BOX
_SPELLED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible_label(token: str, limit: int = LABEL_CHARS) -> str:
    """``token`` as a label of at most ``limit`` characters that is never blank."""
    if token and token.isspace():
        text = "".join(SPACE_MARK if char == " " else _SPELLED.get(char) or f"\\u{ord(char):04x}" for char in token)
    else:
        text = "".join(_SPELLED.get(char, char) for char in token)
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
