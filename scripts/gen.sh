#!/usr/bin/env bash
# Stage 1 (gen): SDA's labelled synthetic set. The defaults are the paper's (gen/sample.py's own): DiT-XL/2 at
# 256 px, no classifier-free guidance (cfg 1.0), 250 DDPM steps, 50 images for each of the 1000 ImageNet classes
# (50,000), seed 0, VAE sd-vae-ft-ema. Output, named after its settings as in the reference:
#   $DATA/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0/<class:04d>/<index:06d>.png
# (+ manifest.json, through which align.sh finds it, and a <folder>_grid.png beside it). The images are the
# same whatever NGPU; BATCH is part of the folder's run key. Rerun the same command to resume.
#
#   bash scripts/gen.sh [gen/sample.py flags ...]     e.g. --num-sampling-steps 100
#   GEN_PER_CLASS=10 bash scripts/gen.sh              # 10 images per class (10,000) instead of 50
#   DRY_RUN=1 bash scripts/gen.sh                     # the command and its plan (images, forwards); runs nothing
#
# Environment (defaults): NGPU (all visible GPUs, else 1 CPU process), DATA (data), GEN_PER_CLASS (50),
# BATCH (32 per process), CKPT (pretrained_ckpt/DiT-XL-2-256x256.pt), VAE_PATH (pretrained_ckpt/sd-vae-ft-ema),
# PY (.venv/bin/python), DRY_RUN. Weights: bash scripts/download_ckpt.sh. Only what you set is passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
need_python
resolve_ngpu
DATA=${DATA:-data}
FLAGS=(--sample-dir "$DATA")
[ -z "${GEN_PER_CLASS:-}" ] || FLAGS+=(--images-per-class "$GEN_PER_CLASS")
[ -z "${BATCH:-}" ] || FLAGS+=(--per-proc-batch-size "$BATCH")
[ -z "${CKPT:-}" ] || FLAGS+=(--ckpt "$CKPT")
[ -z "${VAE_PATH:-}" ] || FLAGS+=(--vae-path "$VAE_PATH")
stage gen/sample.py "${FLAGS[@]}" "$@"
