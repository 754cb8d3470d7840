#!/usr/bin/env bash
# Stage 3: fine-tune a classifier on the aligned synthetic set (data/DiT-Syn).
#   bash scripts/finetune.sh <Model> [GPUS] [finetune/train.py options ...]
# Model: ResNet50, SwinT, SwinB, ConvNeXtT, ConvNeXtB (configs/finetune/<Model>.py), TinyResNet,
# or a config file. GPUS > 1 launches torchrun (PORT sets its port); otherwise one process
# (GPU if visible, else CPU). Extra options go to finetune/train.py, e.g.
#   bash scripts/finetune.sh ResNet50 8
#   bash scripts/finetune.sh SwinT 4 --auto-scale-lr --cfg-options train_cfg.max_epochs=15
#   bash scripts/finetune.sh ResNet50 8 --resume
# Writes work_dirs/<Model>/ (logs, per-epoch checkpoints) and finetuned_ckpt/<Model>.pth + .py.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: bash scripts/finetune.sh <Model> [GPUS] [train.py options]}
shift
GPUS=1
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  GPUS=$1
  shift
fi
PY=python
[ -x .venv/bin/python ] && PY=.venv/bin/python
CONFIG=$MODEL
[ -f "$CONFIG" ] || CONFIG=configs/finetune/$MODEL.py
if [ "$GPUS" -gt 1 ]; then
  exec "$PY" -m torch.distributed.run --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" \
    finetune/train.py "$CONFIG" --launcher pytorch "$@"
else
  exec "$PY" finetune/train.py "$CONFIG" "$@"
fi
