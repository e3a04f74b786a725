"""The JavaScript a page inlines: circuitsvis's and plotly's bundles, read from the installed packages.

Nothing is fetched: circuitsvis's own Python renderer pings google.com and links its CDN, so we
never call it; we only read the browser bundle it ships (``circuitsvis/dist/cdn/iife.js``) and
plotly's ``package_data/plotly.min.js``. Both are located with ``importlib.util.find_spec``,
which does not import (and so does not run) either package.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

CIRCUITSVIS = "circuitsvis"
PLOTLY = "plotly"

_BUNDLE_FILES = {
    CIRCUITSVIS: ("circuitsvis", "dist/cdn/iife.js", "CircuitsVis"),
    PLOTLY: ("plotly", "package_data/plotly.min.js", "Plotly"),
}
# "<" written as \x3C means the same inside JS strings, templates and regexes, and cannot end
# or re-mode the <script> element. In minified code these sequences only occur inside those.
_SCRIPT_BREAKERS = re.compile(r"</(?=script)|<!--", re.IGNORECASE)
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)


def bundle_path(name: str) -> Path:
    """Where the installed package keeps its browser bundle."""
    if name not in _BUNDLE_FILES:
        raise KeyError(f"unknown bundle {name!r}; known: {sorted(_BUNDLE_FILES)}")
    package, relative, _ = _BUNDLE_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {package} package is not installed; `pip install {package}` (it is a dependency of interp_transformer)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but its browser bundle {path} is missing; reinstall {package}")
    return path


@functools.cache
def bundle_js(name: str) -> str:
    """The bundle's source, made safe to inline in a ``<script>`` element."""
    package, _, global_name = _BUNDLE_FILES[name]
    source = bundle_path(name).read_text(encoding="utf-8")
    if global_name not in source:
        raise ValueError(f"{bundle_path(name)} does not define {global_name}; this {package} version is not supported")
    # The map would only be fetched by developer tools, but a saved page should reference no file.
    source = _SOURCE_MAP.sub("", source)
    return _SCRIPT_BREAKERS.sub(lambda m: "\\x3C" + m.group()[1:], source)


def bundle_script(name: str) -> str:
    return f'<script data-itv-bundle="{name}">\n{bundle_js(name)}\n</script>'
