"""Escaping for the three places text lands in a page: script data, HTML text, and circuitsvis's innerHTML.

Every token string is untrusted: a tokenizer happily produces ``</script>``, ``<!--`` or
``<img src=x onerror=...>``. Each context has its own rule, and each function here is the
only way text enters that context.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Inside <script>, the HTML tokenizer ends the element at "</script" and changes state at
# "<!--"; U+2028/U+2029 end a line in older JS engines. The \u escapes mean the same JSON.
_SCRIPT_DATA_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_DATA_UNSAFE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")

# JavaScript's \s: circuitsvis turns each of these into "&nbsp;" before its innerHTML.
JS_WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_WHITESPACE_RE = re.compile(f"[{JS_WHITESPACE}]")

# HTML cannot carry U+0000 (the parser drops it from text); this visible stand-in is used instead.
NUL_STAND_IN = "\u2400"


def _escape_script_char(match: re.Match) -> str:
    char = match.group()
    return _SCRIPT_DATA_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def escape_json_for_script(json_text: str) -> str:
    """Make JSON text safe inside ``<script>``: ``<``, ``>``, ``&``, U+2028, U+2029 become ``\\u`` escapes.

    Outside string literals JSON never contains these characters, so the replacement keeps
    the meaning. Lone surrogates (which UTF-8 cannot encode) are escaped the same way.
    """
    return _SCRIPT_DATA_UNSAFE.sub(_escape_script_char, json_text)


def script_json(data: Any) -> str:
    """Compact JSON for a ``<script type="application/json">`` block. NaN and infinities are refused."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as error:
        raise ValueError(f"cannot put NaN or infinite values into a view ({error}); replace or mask them first") from None
    return escape_json_for_script(text)


def escape_html_text(text: str) -> str:
    """Text for HTML element content or a quoted attribute, displayed exactly as given.

    Beyond ``& < > " '``: a raw CR would be turned into LF by the HTML parser, so it is written as
    a character reference; NUL cannot be represented and becomes ``NUL_STAND_IN``.
    """
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
        .replace("\r", "&#13;")
        .replace("\0", NUL_STAND_IN)
    )


def circuitsvis_token_html(token: str) -> str:
    """A token for a circuitsvis component that puts token text into ``innerHTML``.

    Escaping markup makes ``<s>`` display as ``<s>`` instead of becoming an element. Whitespace
    is written as character references, which circuitsvis's ``/\\s/ -> &nbsp;`` rewrite does not
    match, so the DOM holds the exact whitespace (the page styles tokens ``white-space: pre``).
    ``decode_circuitsvis_token_html`` (and its JavaScript twin in the page runtime) inverts it.
    """
    return _JS_WHITESPACE_RE.sub(lambda m: f"&#x{ord(m.group()):x};", escape_html_text(token))


_ENTITY_RE = re.compile(r"&(amp|lt|gt|quot|#x27|#13|#x[0-9a-f]+);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "#x27": "'", "#13": "\r"}


def decode_circuitsvis_token_html(text: str) -> str:
    """Inverse of ``circuitsvis_token_html`` (up to NUL): what the browser displays for it."""
    return _ENTITY_RE.sub(lambda m: _NAMED.get(m.group(1)) or chr(int(m.group(1)[2:], 16)), text)


def round_sig(value: float, significant: int = 4) -> float | int:
    """``value`` to ``significant`` digits, as an int when whole (``0`` not ``0.0``: smaller JSON)."""
    if not math.isfinite(value):
        return value
    rounded = float(f"{value:.{significant}g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded
