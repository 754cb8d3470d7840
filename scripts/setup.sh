#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install the package with its test
# extras (torch, MMPreTrain on mmcv-lite, diffusers, ...: one environment for all four stages).
# Needs only Python 3.11 (or newer) and pip; PYTHON picks the interpreter (default python3).
#
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
[ "$#" -eq 0 ] || { usage >&2; die "unknown argument '$1'"; }
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 'setuptools<81' wheel
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -c "import torch, mmpretrain, diffusers, resize_right; print('sda environment ready: torch', torch.__version__)"
