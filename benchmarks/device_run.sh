#!/usr/bin/env bash
# The one command to run on a lent GPU machine (bare: Python 3.12 with torch, no package registry, no install
# of this project). From here, with the wheelhouse built once (python benchmarks/device_wheels.py build):
#
#   device run: command "bash benchmarks/device_run.sh", carry [".whl"], timeout_s 540
#
# 1. installs the carried wheels this machine lacks, offline, into a folder first on PYTHONPATH;
# 2. puts this checkout on PYTHONPATH (no install), with the CUDA settings of the real commands;
# 3. runs benchmarks/device_check.py within its budget (default 420 s; BUDGET=..., or extra arguments such as
#    --sections compile for a rerun), writing $OUT/device_check.json after every row and its log to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
SITE=${SDA_DEVICE_SITE:-/tmp/sda-device-site}
{
  date -u +"start %FT%TZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1
  "$PY" benchmarks/device_wheels.py install --wheels "${WHEELS:-.whl}" --target "$SITE" || echo "wheel install failed (rc $?); the rows that need them will say so"
} 2>&1 | tee "$OUT/device_run.log"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SDA_NO_PROGRESS=1
"$PY" benchmarks/device_check.py --budget "${BUDGET:-420}" --out "$OUT/device_check.json" "$@" 2>&1 | tee -a "$OUT/device_run.log"
rc=${PIPESTATUS[0]}
date -u +"end %FT%TZ (rc $rc)" | tee -a "$OUT/device_run.log"
exit "$rc"
