"""``View``: one picture that displays in Jupyter (``_repr_html_``) and saves as a self-contained HTML file.

A view is an HTML fragment (its markup, a JSON data block and a one-line render call) plus the
names of the bundles it needs. ``page.render_page`` puts the bundles in once, however many views
share them; a single view's ``_repr_html_`` and ``save`` are a page of one.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any

from interp_transformer.vis.escaping import escape_html_text, script_json

# Data past this many bytes makes pages slow to open and notebooks heavy; see the size table in vis/__init__.py.
DEFAULT_MAX_BYTES = 5_000_000


class ViewSizeWarning(UserWarning):
    """A view's data is larger than its size limit; the message says how to shrink it."""


class View:
    """Base class: subclasses name the ``bundles`` they need and pass the JSON ``spec`` the page runtime draws from."""

    bundles: tuple[str, ...] = ()

    def __init__(
        self,
        kind: str,
        spec: dict[str, Any] | None,
        title: str | None = None,
        notes: tuple[str, ...] = (),
        markup_after: str = "",
        max_width_em: float | None = None,
    ) -> None:
        """``spec`` is the JSON the runtime draws from (None for static views); ``notes`` are plain
        text lines shown under the title; ``markup_after`` is trusted, already-escaped HTML;
        ``max_width_em`` caps the drawing's width (charts otherwise fill the page)."""
        self.kind = kind
        self.title = title
        self.notes = tuple(notes)
        self.element_id = f"itv-{uuid.uuid4().hex[:12]}"
        self._markup_after = markup_after
        self._max_width_em = max_width_em
        self._data_json = script_json(spec) if spec is not None else None

    def data_json(self) -> str | None:
        """The escaped JSON the page runtime draws this view from (None for a static view)."""
        return self._data_json

    @property
    def data_bytes(self) -> int:
        """Size of the view's JSON data block (bundles not included)."""
        data = self.data_json()
        return len(data.encode("utf-8")) if data else 0

    def warn_if_large(self, max_bytes: int | None, how_to_shrink: str) -> None:
        if max_bytes is not None and self.data_bytes > max_bytes:
            warnings.warn(
                f"{self.kind} view data is {self.data_bytes / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit "
                f"(the page will be slow to open); {how_to_shrink}, or pass max_bytes=None to keep it all",
                ViewSizeWarning,
                stacklevel=3,
            )

    def fragment(self) -> str:
        """This view's HTML without bundles: its markup, data block and render call."""
        title = f'<div class="itv-title">{escape_html_text(self.title)}</div>' if self.title else ""
        notes = "".join(f'<div class="itv-note">{escape_html_text(note)}</div>' for note in self.notes)
        parts = [f'<div class="itv-view" id="{self.element_id}" data-itv-kind="{self.kind}">', title, notes]
        data = self.data_json()
        if data is not None:
            style = f' style="max-width: min(100%, {self._max_width_em:g}em)"' if self._max_width_em else ""
            parts.append(f'<div class="itv-target" id="{self.element_id}-target"{style}></div>')
            parts.append(f'<script type="application/json" id="{self.element_id}-data">{data}</script>')
            parts.append(f'<script>window.interpTransformerVis.render("{self.element_id}");</script>')
        parts.extend([self._markup_after, "</div>"])
        return "\n".join(part for part in parts if part)

    def html(self) -> str:
        """A complete HTML document holding this view and the bundles it needs."""
        from interp_transformer.vis.page import render_page

        return render_page([self], title=self.title, heading=False)

    def save(self, path: str | Path) -> Path:
        """Write a self-contained HTML file (opens with the network off) and return its path."""
        from interp_transformer.vis.page import write_html

        return write_html(self.html(), path)

    def _repr_html_(self) -> str:
        from interp_transformer.vis.page import render_fragment

        return render_fragment([self])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.title or ''!r} data={self.data_bytes} bytes>"
