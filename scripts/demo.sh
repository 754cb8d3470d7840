#!/usr/bin/env bash
# The mini benchmark (the README's main job): the whole SDA method end to end on a CPU.
#   bash scripts/demo.sh                 # seed 0: table, JSON and figures in results/mini/
#   bash scripts/demo.sh --seeds 0,1,2   # 3 seeds, mean ± std
#   bash scripts/demo.sh --quick         # shortened pipeline (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
PY=.venv/bin/python
[ -x "$PY" ] || die "no .venv: run 'bash scripts/setup.sh' first"
exec "$PY" mini/demo.py "$@"
