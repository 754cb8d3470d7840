#!/usr/bin/env bash
# Stage 1 (gen): SDA's labelled synthetic set, as in the paper: DiT-XL/2 at 256 px, no classifier-free
# guidance (cfg 1.0), 250 DDPM steps, 50 images for each of the 1000 ImageNet classes (50,000), seed 0,
# VAE sd-vae-ft-ema. Output, named after its settings as in the reference:
# data/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0/<class:04d>/<index:06d>.png
# (+ manifest.json, and a <folder>_grid.png beside it for a quick look). Stage 2 (align.sh) reads it
# and writes the aligned set to data/DiT-Syn, which Stage 3 fine-tunes on. Any number of GPUs (or CPU processes): the images are the
# same whatever NPROC or the batch size; rerun the same command to resume after an interruption.
#
# Weights: bash scripts/download_ckpt.sh (or set the paths below).
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- paths (edit these) ----
CKPT=${CKPT:-pretrained_ckpt/DiT-XL-2-256x256.pt}   # dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt
VAE_PATH=${VAE_PATH:-pretrained_ckpt/sd-vae-ft-ema} # diffusers folder of huggingface.co/stabilityai/sd-vae-ft-ema
SAMPLE_DIR=${SAMPLE_DIR:-data}                      # the run writes SAMPLE_DIR/<settings-named folder>/
# ---- run ----
PY=${PY:-.venv/bin/python}
NPROC=${NPROC:-$("$PY" -c "import torch; print(max(torch.cuda.device_count(), 1))")}  # default: all GPUs
BATCH=${BATCH:-32}          # per process; does not change the images

"$PY" -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node "$NPROC" gen/sample.py \
  --model DiT-XL/2 --image-size 256 --num-classes 1000 --cfg-scale 1.0 --num-sampling-steps 250 \
  --global-seed 0 --vae ema --ckpt "$CKPT" --vae-path "$VAE_PATH" \
  --images-per-class 50 --classes 0-999 --per-proc-batch-size "$BATCH" \
  --sample-dir "$SAMPLE_DIR" "$@"
