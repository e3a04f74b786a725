"""PNG export of plotly figures through kaleido, using the machine's Chromium and no network.

kaleido's default page loads MathJax from a CDN; we turn MathJax off and point it at the
plotly.js inside the installed plotly package, so the export reads only local files. kaleido
finds Chromium on ``PATH`` (Debian: ``apt-get install chromium``) or at ``$BROWSER_PATH``; we
never let it download a browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from interp_transformer.vis.bundle import PLOTLY, bundle_path

if TYPE_CHECKING:
    import plotly.graph_objects as go


def write_png(figure: go.Figure, path: str | Path, width: int | None = None, height: int | None = None, scale: float = 2) -> Path:
    """Render ``figure`` to a PNG file and return its path."""
    try:
        import kaleido
        from kaleido.errors import ChromeNotFoundError
    except ImportError:
        raise ModuleNotFoundError("PNG export needs kaleido>=1 (`pip install kaleido`); the HTML views work without it") from None
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_png writes PNG; give a path ending in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = figure.layout
    options = {
        "format": "png",
        "width": width or layout.width or 900,
        "height": height or layout.height or 500,
        "scale": scale,
    }
    try:
        image = kaleido.calc_fig_sync(
            figure.to_dict(), opts=options, kopts={"mathjax": False, "plotlyjs": bundle_path(PLOTLY).as_uri()}
        )
    except ChromeNotFoundError:
        raise RuntimeError(
            "PNG export needs Chromium or Chrome on this machine (Debian/Ubuntu: apt-get install chromium), "
            "or its path in $BROWSER_PATH; interp_transformer never downloads a browser. "
            "Without one, save the HTML and use the camera button in the figure's toolbar"
        ) from None
    path.write_bytes(image)
    return path
