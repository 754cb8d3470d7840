#!/usr/bin/env bash
# Stage 2 (align): SDA's three projection runs (synthetic set, ImageNet-C, ImageNet-W) with the
# reference's flags, launched with torchrun instead of mpiexec. Every input is projected exactly once
# whatever the number of GPUs; rerun the same command to resume after an interruption.
#   NGPU=8 bash scripts/align.sh            # all three runs
#   NGPU=8 bash scripts/align.sh C          # only ImageNet-C (CORRUPTION=all for the 15, SEVERITY=5)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | wc -l || echo 1)}
[ "$NGPU" -ge 1 ] || NGPU=1
CKPT=${CKPT:-pretrained_ckpt/256x256_diffusion_uncond.pt}
DATA=${DATA:-data}
CORRUPTION=${CORRUPTION:-gaussian_noise}
SEVERITY=${SEVERITY:-5}
GEN_DIR=${GEN_DIR:-$DATA/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0}  # Stage 1 output (must not be $DATA/DiT-Syn)
EXTRA=${EXTRA:-}  # e.g. "--guidance-norm sample --precision bf16 --lossless"

MODEL_FLAGS="--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 --learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True"
ALIGN_FLAGS="--batch_size 10 --num_samples 50000 --timestep_respacing 100 --model_path $CKPT --D 4 --N 50 --scale 6 --save_dir $DATA/"
RUN="$PY -m torch.distributed.run --standalone --nproc_per_node $NGPU align/project.py $MODEL_FLAGS $ALIGN_FLAGS"

WHICH=${1:-all}
if [ "$WHICH" = all ] || [ "$WHICH" = D ]; then
  # Synthetic set from Stage 1 (GEN_DIR/<class>/*.png) -> $DATA/DiT-Syn/<class>/ (MoD)
  $RUN --base_samples "$GEN_DIR" --datatype D $EXTRA
fi
if [ "$WHICH" = all ] || [ "$WHICH" = C ]; then
  # ImageNet-C -> $DATA/ImageNet-C-Syn/<corruption>/<severity>/<wnid>/
  $RUN --base_samples "$DATA/ImageNet-C" --datatype C --corruption "$CORRUPTION" --severity "$SEVERITY" $EXTRA
fi
if [ "$WHICH" = all ] || [ "$WHICH" = W ]; then
  # ImageNet-W -> $DATA/ImageNet-W-Syn/val/<wnid>/
  $RUN --base_samples "$DATA/ImageNet-W" --datatype W $EXTRA
fi
