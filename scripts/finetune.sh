#!/usr/bin/env bash
# Stage 3 (finetune): fine-tune a classifier on the aligned synthetic set ($DATA/DiT-Syn).
#
#   bash scripts/finetune.sh <Model> [NGPU] [finetune/train.py options ...]
#   NGPU=8 bash scripts/finetune.sh ResNet50
#   bash scripts/finetune.sh SwinT 4 --auto-scale-lr --cfg-options train_cfg.max_epochs=15
#   NGPU=8 bash scripts/finetune.sh ResNet50 --resume
#   DRY_RUN=1 bash scripts/finetune.sh ResNet50       # the command and its plan (images, epochs); runs nothing
#
# Model: ResNet50, SwinT, SwinB, ConvNeXtT, ConvNeXtB (configs/finetune/<Model>.py), TinyResNet (a tiny
# 32 px recipe), or a config file. The GPU count is NGPU (default: all visible GPUs, else 1 CPU process),
# or a number right after the model as in the reference. More than one launches torchrun (PORT sets its
# port). Writes work_dirs/<Model>/ (logs, checkpoints) and $FT_DIR/<Model>.pth + .py.
# Environment (defaults): NGPU, DATA (data: trains on $DATA/DiT-Syn), FT_DIR (finetuned_ckpt), PY
# (.venv/bin/python), DRY_RUN.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
[ "$#" -ge 1 ] || { usage >&2; die "name a model (or a config file)"; }
MODEL=$1
shift
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  NGPU=$1
  shift
fi
CONFIG=$MODEL
if [ ! -f "$CONFIG" ]; then
  CONFIG=configs/finetune/$MODEL.py
  if [ ! -f "$CONFIG" ]; then
    models=$(ls configs/finetune | sed -n 's/^\([^_].*\)\.py$/\1/p' | tr '\n' ' ')
    die "unknown model '$MODEL': use one of ${models}or a config file"
  fi
fi
need_python
resolve_ngpu
DATA=${DATA:-data}
NAME=$(basename "$CONFIG" .py)
need_input "$DATA/DiT-Syn" "make it with scripts/align.sh D (or set DATA)"
ARGS=("$CONFIG" --data-root "$DATA/DiT-Syn" --final-ckpt "${FT_DIR:-finetuned_ckpt}/$NAME.pth")
if [ "$NGPU" -gt 1 ]; then
  LAUNCH=("$PY" -m torch.distributed.run --nproc_per_node="$NGPU" --master_port="${PORT:-29500}")
  ARGS+=(--launcher pytorch)
else
  LAUNCH=("$PY")
fi
run "${LAUNCH[@]}" finetune/train.py "${ARGS[@]}" "$@"
if plans; then NGPU=$NGPU "$PY" finetune/train.py "${ARGS[@]}" "$@" --plan; fi
