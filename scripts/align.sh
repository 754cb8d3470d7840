#!/usr/bin/env bash
# Stage 2 (align): SDA's three projection runs with the reference's flags (torchrun instead of mpiexec):
#   D  the synthetic set of Stage 1 ($GEN_DIR)          -> $DATA/DiT-Syn/<class>/
#   C  ImageNet-C ($DATA/ImageNet-C), all 15 corruptions -> $DATA/ImageNet-C-Syn/<corruption>/<severity>/<wnid>/
#   W  ImageNet-W ($DATA/ImageNet-W)                    -> $DATA/ImageNet-W-Syn/val/<wnid>/
# Every input is projected exactly once whatever NGPU; rerun the same command to resume.
#
#   bash scripts/align.sh [all|D|C|W] [align/project.py flags ...]
#   NGPU=8 CORRUPTION=fog,snow SEVERITY=3,5 bash scripts/align.sh C
#   METHOD=diffpure bash scripts/align.sh C     # DiffPure's purification instead (-> $DATA/DiffPure/...)
#
# DRY_RUN=1 prints the commands instead of running them. Environment (defaults): NGPU (all visible GPUs, else 1 CPU process), DATA (data),
# CORRUPTION (all: the 15, as scripts/eval.sh scores them), SEVERITY (5), CKPT
# (pretrained_ckpt/256x256_diffusion_uncond.pt), GEN_DIR (Stage 1's folder under $DATA),
# PY (.venv/bin/python), METHOD (dda: the guided projection; diffpure: the same ADM, noised to t* = 150 of
# 1000 and denoised without guidance, written to $DATA/DiffPure/; the D set is not purified).
# Extra flags, e.g. --guidance-norm sample --precision bf16 --lossless.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
WHICH=${1:-all}
case "$WHICH" in
  all|D|C|W) if [ "$#" -gt 0 ]; then shift; fi ;;
  -*) WHICH=all ;;  # flags only: all three runs
  *) usage >&2; die "unknown set '$WHICH': use all, D, C or W" ;;
esac
need_python
resolve_ngpu
CKPT=${CKPT:-pretrained_ckpt/256x256_diffusion_uncond.pt}
DATA=${DATA:-data}
CORRUPTION=${CORRUPTION:-all}
SEVERITY=${SEVERITY:-5}
GEN_DIR=${GEN_DIR:-$DATA/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0}  # must not be $DATA/DiT-Syn

MODEL_FLAGS="--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 --learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True"
case "${METHOD:-dda}" in
  dda) ALIGN_FLAGS="--batch_size 10 --num_samples 50000 --timestep_respacing 100 --model_path $CKPT --D 4 --N 50 --scale 6 --save_dir $DATA/" ;;
  diffpure)
    ALIGN_FLAGS="--batch_size 10 --num_samples 50000 --guidance none --timestep_respacing 1000 --N 150 --model_path $CKPT --save_dir $DATA/DiffPure/"
    [ "$WHICH" != all ] || WHICH=CW ;;  # DiffPure purifies target images only
  *) die "METHOD=$METHOD: use dda or diffpure" ;;
esac
RUN="run $(launcher) align/project.py $MODEL_FLAGS $ALIGN_FLAGS"

if [ "$WHICH" = all ] || [ "$WHICH" = D ]; then
  $RUN --base_samples "$GEN_DIR" --datatype D "$@"
fi
if [ "$WHICH" = all ] || [ "$WHICH" = C ] || [ "$WHICH" = CW ]; then
  $RUN --base_samples "$DATA/ImageNet-C" --datatype C --corruption "$CORRUPTION" --severity "$SEVERITY" "$@"
fi
if [ "$WHICH" = all ] || [ "$WHICH" = W ] || [ "$WHICH" = CW ]; then
  $RUN --base_samples "$DATA/ImageNet-W" --datatype W "$@"
fi
