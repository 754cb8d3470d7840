#!/usr/bin/env bash
# Stage 4 (eval): the paper's ImageNet-C (15 corruptions at severity 5) and ImageNet-W tables for the
# five models, with the Source, Projected, DDA and SDA columns from one pass per model and set.
#
#   bash scripts/eval.sh [Model ...] [eval/evaluate.py flags ...]     (default: all five models)
#   NGPU=8 bash scripts/eval.sh ResNet50 --amp --batch-size 128
#   MODES=first,second,sum,sda,diffpure TTA=norm,tent,memo bash scripts/eval.sh ResNet50   # every column
#
# Inputs: $DATA/ImageNet-C, $DATA/ImageNet-C-Syn, $DATA/ImageNet-W, $DATA/ImageNet-W-Syn (Stage 2),
# pretrained_ckpt/ (scripts/download_ckpt.sh), finetuned_ckpt/<Model>.pth (Stage 3).
# Outputs: $OUT/<Model>_{C,W}.{json,md,csv}.
# DRY_RUN=1 prints the commands instead of running them. Environment (defaults): NGPU (1; more runs torchrun with exact gathering), DATA (data), OUT
# (results/eval), MODES (first,second,sum,sda; add diffpure for DiffPure's column, read from $DATA/DiffPure),
# TTA (none; norm,tent,memo: the adaptation baselines), CORRUPTION (all), SEVERITY (5), SETS (C,W),
# PY (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
need_python
NGPU=${NGPU:-1}
resolve_ngpu
DATA=${DATA:-data}
OUT=${OUT:-results/eval}
MODES=${MODES:-first,second,sum,sda}
CORRUPTION=${CORRUPTION:-all}
SEVERITY=${SEVERITY:-5}
SETS=${SETS:-C,W}
PAPER_MODELS=(ResNet50 SwinT ConvNeXtT SwinB ConvNeXtB)

MODELS=()
while [ "$#" -gt 0 ] && [[ "$1" != -* ]]; do
  [ -f "configs/eval/$1.py" ] || die "unknown model '$1': use one of ${PAPER_MODELS[*]}"
  MODELS+=("$1")
  shift
done
[ "${#MODELS[@]}" -gt 0 ] || MODELS=("${PAPER_MODELS[@]}")
LAUNCH=()
[ "$NGPU" -gt 1 ] && LAUNCH=(--launcher pytorch)
[ -z "${TTA:-}" ] || LAUNCH+=(--tta "$TTA")
pur() {  # DiffPure's purified set of a layout, when the diffpure column is asked for
  if [[ ",$MODES," == *,diffpure,* ]]; then echo "--data_prefix_diffpure $DATA/DiffPure/$1"; fi
}

[ -n "${DRY_RUN:-}" ] || mkdir -p "$OUT"
for M in "${MODELS[@]}"; do
  ORIGIN=$("$PY" -m sda.utils.weights classifier "$M")
  COMMON=("configs/eval/$M.py" "finetuned_ckpt/$M.pth" --originckpt "$ORIGIN" --metrics accuracy --ensemble "$MODES")
  if [[ ",$SETS," == *,C,* ]]; then
    run $(launcher) eval/evaluate.py "${COMMON[@]}" --datatype C --corruption "$CORRUPTION" --severity "$SEVERITY" \
      --data_prefix1 "$DATA/ImageNet-C" --data_prefix2 "$DATA/ImageNet-C-Syn" --out "$OUT/${M}_C.json" \
      $(pur ImageNet-C-Syn) "${LAUNCH[@]}" "$@"
  fi
  if [[ ",$SETS," == *,W,* ]]; then
    run $(launcher) eval/evaluate.py "${COMMON[@]}" --datatype W \
      --data_prefix1 "$DATA/ImageNet-W" --data_prefix2 "$DATA/ImageNet-W-Syn" --out "$OUT/${M}_W.json" \
      $(pur ImageNet-W-Syn) "${LAUNCH[@]}" "$@"
  fi
done
