#!/usr/bin/env bash
# SDA Stage 4: the paper's ImageNet-C (15 corruptions, severity 5) and ImageNet-W tables for the
# five models, with the Source, Projected, DDA and SDA columns from one pass per model and set.
#
#   bash scripts/eval.sh                      # all five models, 1 GPU
#   NGPU=8 bash scripts/eval.sh ResNet50      # one model, 8 GPUs (torchrun, exact gathering)
#
# Inputs: data/ImageNet-C, data/ImageNet-C-Syn, data/ImageNet-W, data/ImageNet-W-Syn (Stage 2),
# pretrained_ckpt/ (scripts/download_ckpt.sh), finetuned_ckpt/<Model>.pth (Stage 3).
# Outputs: results/eval/<Model>_{C,W}.{json,md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NGPU=${NGPU:-1}
DATA=${DATA:-data}
OUT=${OUT:-results/eval}
MODES=${MODES:-first,second,sum,sda}
EXTRA=${EXTRA:-}   # e.g. EXTRA="--amp --batch-size 128"

declare -A ORIGIN=(
  [ResNet50]=resnet50_8xb32_in1k_20210831-ea4938fc.pth
  [SwinT]=swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth
  [ConvNeXtT]=convnext-tiny_3rdparty_32xb128_in1k_20220124-18abde00.pth
  [SwinB]=swin_base_224_b16x64_300e_imagenet_20210616_190742-93230b0d.pth
  [ConvNeXtB]=convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth
)
MODELS=("$@")
[ "${#MODELS[@]}" -gt 0 ] || MODELS=(ResNet50 SwinT ConvNeXtT SwinB ConvNeXtB)

if [ "$NGPU" -gt 1 ]; then
  RUN=("$PY" -m torch.distributed.run --nproc_per_node "$NGPU" eval/test_ensemble.py)
  LAUNCH=(--launcher pytorch)
else
  RUN=("$PY" eval/test_ensemble.py)
  LAUNCH=()
fi

mkdir -p "$OUT"
for M in "${MODELS[@]}"; do
  [ -n "${ORIGIN[$M]:-}" ] || { echo "unknown model $M (one of ${!ORIGIN[*]})" >&2; exit 2; }
  # ImageNet-C: all 15 corruptions at severity 5, one call
  "${RUN[@]}" "configs/eval/$M.py" "finetuned_ckpt/$M.pth" \
    --originckpt "pretrained_ckpt/${ORIGIN[$M]}" --metrics accuracy --datatype C \
    --ensemble "$MODES" --corruption all --severity 5 \
    --data_prefix1 "$DATA/ImageNet-C" --data_prefix2 "$DATA/ImageNet-C-Syn" \
    --out "$OUT/${M}_C.json" "${LAUNCH[@]}" $EXTRA
  # ImageNet-W
  "${RUN[@]}" "configs/eval/$M.py" "finetuned_ckpt/$M.pth" \
    --originckpt "pretrained_ckpt/${ORIGIN[$M]}" --metrics accuracy --datatype W \
    --ensemble "$MODES" \
    --data_prefix1 "$DATA/ImageNet-W" --data_prefix2 "$DATA/ImageNet-W-Syn" \
    --out "$OUT/${M}_W.json" "${LAUNCH[@]}" $EXTRA
done
