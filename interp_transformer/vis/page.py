"""Assemble views into one page: stylesheet, each needed bundle once, the runtime, then the views."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from interp_transformer.vis.bundle import CIRCUITSVIS, PLOTLY, bundle_script
from interp_transformer.vis.escaping import escape_html_text
from interp_transformer.vis.runtime import PAGE_CSS, RUNTIME_CSS, RUNTIME_JS
from interp_transformer.vis.view import View

_BUNDLE_ORDER = (CIRCUITSVIS, PLOTLY)


def _check_views(views: Iterable[View]) -> list[View]:
    views = list(views)
    for view in views:
        if not isinstance(view, View):
            raise TypeError(f"a page holds views (from interp_transformer.vis), got {type(view).__name__}")
    ids = [view.element_id for view in views]
    if len(set(ids)) != len(ids):
        raise ValueError("the same view appears twice on one page; element ids must be unique, so build it twice")
    return views


def render_fragment(views: Sequence[View]) -> str:
    """HTML for a notebook cell or a page body: styles, the bundles the views need (once each), then the views."""
    views = _check_views(views)
    needed = {name for view in views for name in view.bundles}
    parts = [f"<style>{RUNTIME_CSS}</style>"]
    parts += [bundle_script(name) for name in _BUNDLE_ORDER if name in needed]
    parts.append(f"<script>{RUNTIME_JS}</script>")
    parts += [view.fragment() for view in views]
    return "\n".join(parts)


def render_page(views: Sequence[View], title: str | None = None, heading: bool = True) -> str:
    """A complete, self-contained HTML document. Its CSP forbids loading anything from anywhere.

    ``title`` names the browser tab and, with ``heading``, tops the page as an ``<h1>``.
    """
    h1 = f"<h1>{escape_html_text(title)}</h1>\n" if title and heading else ""
    # default-src 'none' blocks every fetch (images, fonts, frames, connections); inline scripts,
    # styles and data:/blob: images (plotly and tfjs draw through them) stay allowed.
    csp = "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; worker-src blob:"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        f"<title>{escape_html_text(title or 'interp_transformer')}</title>\n"
        f"<style>{PAGE_CSS}</style>\n</head>\n<body>\n"
        f"{h1}{render_fragment(views)}\n</body>\n</html>\n"
    )


def write_html(html: str, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"save writes HTML; give a path ending in .html, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


class Page:
    """Several views on one page, with each JavaScript bundle inlined once."""

    def __init__(self, views: Iterable[View] = (), title: str | None = None) -> None:
        self.views = _check_views(views)
        self.title = title

    def add(self, view: View) -> Page:
        self.views = _check_views([*self.views, view])
        return self

    def html(self) -> str:
        return render_page(self.views, self.title)

    def save(self, path: str | Path) -> Path:
        """Write one self-contained HTML file (opens with the network off) and return its path."""
        return write_html(self.html(), path)

    def _repr_html_(self) -> str:
        heading = f"<h2>{escape_html_text(self.title)}</h2>\n" if self.title else ""
        return heading + render_fragment(self.views)

    def __repr__(self) -> str:
        return f"<Page {self.title!r} with {len(self.views)} views>"


def combine(*views: View, title: str | None = None) -> Page:
    """``combine(grid, detail, heatmap, title="Layer 1")``: one page, bundles inlined once."""
    return Page(views, title)
