#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install the
# package with its test extras. Needs only Python 3.10+ and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 'setuptools<81' wheel
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -c "import torch, mmpretrain, diffusers, resize_right; print('sda environment ready: torch', torch.__version__)"
