#!/usr/bin/env bash
# The project's test command: lint, then the fast test suite (slow end-to-end
# tests are marked `slow`; run them with `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run 'bash scripts/setup.sh' first" >&2; exit 1; }
"$PY" -m ruff check sda gen align finetune eval benchmarks tests
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
"$PY" -m pytest -q "$@"
