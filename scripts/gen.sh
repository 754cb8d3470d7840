#!/usr/bin/env bash
# Stage 1 (gen): SDA's labelled synthetic set, as in the paper: DiT-XL/2 at 256 px, no classifier-free
# guidance (cfg 1.0), 250 DDPM steps, 50 images for each of the 1000 ImageNet classes (50,000), seed 0,
# VAE sd-vae-ft-ema. Output, named after its settings as in the reference:
#   $DATA/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0/<class:04d>/<index:06d>.png
# (+ manifest.json, and a <folder>_grid.png beside it). Stage 2 (align.sh) reads it and writes the
# aligned set to $DATA/DiT-Syn. The images are the same whatever NGPU or BATCH; rerun to resume.
#
#   bash scripts/gen.sh [gen/sample.py flags ...]     e.g. --images-per-class 2 --classes 0-9
#
# DRY_RUN=1 prints the commands instead of running them. Environment (defaults): NGPU (all visible GPUs, else 1 CPU process), DATA (data), BATCH (32 per process),
# CKPT (pretrained_ckpt/DiT-XL-2-256x256.pt), VAE_PATH (pretrained_ckpt/sd-vae-ft-ema), PY (.venv/bin/python).
# Weights: bash scripts/download_ckpt.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
need_python
resolve_ngpu
CKPT=${CKPT:-pretrained_ckpt/DiT-XL-2-256x256.pt}
VAE_PATH=${VAE_PATH:-pretrained_ckpt/sd-vae-ft-ema}
DATA=${DATA:-data}
BATCH=${BATCH:-32}

run $(launcher) gen/sample.py \
  --model DiT-XL/2 --image-size 256 --num-classes 1000 --cfg-scale 1.0 --num-sampling-steps 250 \
  --global-seed 0 --vae ema --ckpt "$CKPT" --vae-path "$VAE_PATH" \
  --images-per-class 50 --classes 0-999 --per-proc-batch-size "$BATCH" \
  --sample-dir "$DATA" "$@"
