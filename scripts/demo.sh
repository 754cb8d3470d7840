#!/usr/bin/env bash
# The mini benchmark (the README's main job): the whole SDA method end to end on a CPU, with its
# ablation, DiffPure, the adaptation controls, an oracle and the premise gates.
#   bash scripts/demo.sh                         # glyphs32, seed 0: tables, JSON, figures in results/mini/glyphs32/
#   bash scripts/demo.sh --seeds 0,1,2           # 3 seeds, mean ± std, and the verdict
#   bash scripts/demo.sh --benchmark digits      # the premise-absent control
#   bash scripts/demo.sh --quick                 # shortened pipeline (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
PY=.venv/bin/python
[ -x "$PY" ] || die "no .venv: run 'bash scripts/setup.sh' first"
exec "$PY" mini/demo.py "$@"
