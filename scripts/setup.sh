#!/usr/bin/env bash
# Creates .venv with everything the package, its tests and its demo need. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# Pin the CPU wheel where this machine has it; otherwise take any torch the range in setup.cfg allows.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0" || .venv/bin/python -m pip install --quiet "torch>=2.2"
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
