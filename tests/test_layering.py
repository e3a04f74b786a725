"""The core (config, hooks, names, components, model, loading, weights) imports nothing from the analysis layers.

Analyses (circuits, patching, vis, the toy training code, sae) are free functions of a model; if the core
imported one of them, a change there could break loading a model, and the import cycle would be back.
Each core module is imported in a fresh interpreter, one after another, and after each import the
newly loaded modules are checked, so a failure names the core module that pulled the analysis in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import interp_transformer

ANALYSIS_LAYERS = ("circuits", "patching", "vis", "toy", "sae")
CORE_MODULES = (
    "config", "hooks", "names", "model", "weights", "factored_matrix", "activation_functions", "tokenization", "generation",
)
CORE_PACKAGES = ("components", "loading")
PACKAGE_DIR = Path(interp_transformer.__file__).parent

PROBE = """
import importlib, json, sys
forbidden = tuple("interp_transformer." + layer for layer in {layers!r})
report = {{}}
for name in {modules!r}:
    before = set(sys.modules)
    importlib.import_module(name)
    pulled = sorted(m for m in set(sys.modules) - before if m.startswith(forbidden))
    if pulled:
        report[name] = pulled
print(json.dumps(report))
"""


def core_modules() -> list[str]:
    # The package itself first: its __init__ imports most of the core, and gets the blame for what that pulls in.
    names = ["interp_transformer"] + [f"interp_transformer.{name}" for name in CORE_MODULES]
    for package in CORE_PACKAGES:
        names.append(f"interp_transformer.{package}")
        names += [f"interp_transformer.{package}.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE_DIR / package)])]
    return names


def test_the_core_list_covers_real_modules():
    modules = core_modules()
    for name in modules:
        path = PACKAGE_DIR.joinpath(*name.split(".")[1:]) if name != "interp_transformer" else PACKAGE_DIR
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), f"{name} is not a module: update CORE_MODULES"
    assert "interp_transformer.loading.pretrained" in modules and "interp_transformer.components.attention" in modules


def test_core_modules_import_no_analysis_layer():
    probe = PROBE.format(layers=ANALYSIS_LAYERS, modules=core_modules())
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"importing the core failed:\n{completed.stderr}"
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {}, (
        f"core module(s) imported analysis layers {report}: move the shared piece into the core "
        "(as FactoredMatrix and the embedded-model lookup were) or import it only where the analysis runs"
    )
