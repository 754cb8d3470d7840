#!/usr/bin/env bash
# The project's test command: lint and format check (ruff), then the fast test suite. Slow end-to-end
# tests are marked `slow`; any arguments go to pytest instead of the default selection.
#
#   bash scripts/test.sh                 # ruff + the fast suite
#   bash scripts/test.sh -m slow         # the slow end-to-end tests
#   bash scripts/test.sh tests/align -x  # any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
PY=.venv/bin/python
[ -x "$PY" ] || die "no .venv: run 'bash scripts/setup.sh' first"
LINTED=(sda gen align finetune eval mini benchmarks configs tests)
"$PY" -m ruff check "${LINTED[@]}"
"$PY" -m ruff format --check "${LINTED[@]}"
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
"$PY" -m pytest -q "$@"
