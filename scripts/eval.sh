#!/usr/bin/env bash
# Stage 4 (eval): the paper's ImageNet-C table (15 corruptions at severity 5) for the five models, with the
# Source, Projected, DDA and SDA columns from one pass per model and set, then Table 1 as reproduced:
# $OUT/table1.{md,json,csv}, every number with its 95% interval beside the published one (eval/report.py).
#
#   bash scripts/eval.sh [Model ...] [eval/evaluate.py flags ...]     (default: all five models)
#   NGPU=8 bash scripts/eval.sh ResNet50 --amp --batch-size 128
#   PER_CLASS=5 bash scripts/eval.sh                 # exactly the subset align.sh projected with PER_CLASS=5
#   SETS=C,W bash scripts/eval.sh                    # ImageNet-W too; SETS=clean: the clean-val check
#   MODES=first,second,sum,sda,diffpure TTA=norm,tent,memo bash scripts/eval.sh ResNet50   # every column
#   DRY_RUN=1 bash scripts/eval.sh                   # the commands and their plans (images, forwards)
#
# Model: ResNet50, SwinT, ConvNeXtT, SwinB, ConvNeXtB (configs/eval/<Model>.py; the original weights from
# scripts/download_ckpt.sh), or a config file (then ORIGIN names the original weights).
# Inputs: $DATA/ImageNet-C and $DATA/ImageNet-C-Syn (align.sh C), $DATA/ImageNet-W and -W-Syn for SETS W,
# $DATA/ImageNet/val/<wnid>/ for SETS clean, $FT_DIR/<Model>.pth (finetune.sh, or the authors' checkpoints).
# Outputs: $OUT/<Model>_{C,W,clean}.{json,md,csv} and $OUT/table1.{md,json,csv}.
# Environment (defaults): NGPU (all visible GPUs, else 1 process; more runs torchrun with exact gathering),
# DATA (data), OUT (results/eval), FT_DIR (finetuned_ckpt), SETS (C; also W, clean), PER_CLASS and SUBSET_SEED
# (every image), MODES (first,second,sum,sda; add diffpure for DiffPure's column, read from $DATA/DiffPure), TTA
# (none; norm,tent,memo: the adaptation baselines), CORRUPTION (all), SEVERITY (5), ORIGIN, PY, DRY_RUN.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
need_python
resolve_ngpu
check_subset
DATA=${DATA:-data}
OUT=${OUT:-results/eval}
FT_DIR=${FT_DIR:-finetuned_ckpt}
MODES=${MODES:-first,second,sum,sda}
SETS=${SETS:-C}
PAPER_MODELS=(ResNet50 SwinT ConvNeXtT SwinB ConvNeXtB)
for s in ${SETS//,/ }; do
  case "$s" in C|W|clean) ;; *) die "SETS=$SETS: use a comma list of C, W and clean" ;; esac
done

MODELS=()
while [ "$#" -gt 0 ] && [[ "$1" != -* ]]; do
  [ -f "configs/eval/$1.py" ] || [ -f "$1" ] || die "unknown model '$1': use one of ${PAPER_MODELS[*]} or a config file"
  MODELS+=("$1")
  shift
done
[ "${#MODELS[@]}" -gt 0 ] || MODELS=("${PAPER_MODELS[@]}")
LAUNCH=()
[ "$NGPU" -eq 1 ] || LAUNCH=(--launcher pytorch)
ADAPT=()
[ -z "${TTA:-}" ] || ADAPT=(--tta "$TTA")
pur() {  # DiffPure's purified set of a layout, when the diffpure column is asked for
  if [[ ",$MODES," == *,diffpure,* ]]; then echo "--data_prefix_diffpure $DATA/DiffPure/$1"; fi
}
has() { [[ ",$SETS," == *,$1,* ]]; }

dry || mkdir -p "$OUT"
for M in "${MODELS[@]}"; do
  if [ -f "configs/eval/$M.py" ]; then
    CONFIG=configs/eval/$M.py
    ORIG=${ORIGIN:-$("$PY" -m sda.utils.weights classifier "$M")}
  else
    CONFIG=$M
    M=$(basename "$M" .py)
    ORIG=${ORIGIN:?a config file needs ORIGIN=<its original weights>}
  fi
  FT=$FT_DIR/$M.pth
  COMMON=("$CONFIG" "$FT" --originckpt "$ORIG" --metrics accuracy)
  if has C; then
    stage eval/evaluate.py "${COMMON[@]}" --ensemble "$MODES" --datatype C --corruption "${CORRUPTION:-all}" \
      --severity "${SEVERITY:-5}" --data_prefix1 "$DATA/ImageNet-C" --data_prefix2 "$DATA/ImageNet-C-Syn" \
      "${SUBSET[@]}" --out "$OUT/${M}_C.json" $(pur ImageNet-C-Syn) "${LAUNCH[@]}" "${ADAPT[@]}" "$@"
  fi
  if has W; then
    stage eval/evaluate.py "${COMMON[@]}" --ensemble "$MODES" --datatype W --data_prefix1 "$DATA/ImageNet-W" \
      --data_prefix2 "$DATA/ImageNet-W-Syn" "${SUBSET[@]}" --out "$OUT/${M}_W.json" $(pur ImageNet-W-Syn) \
      "${LAUNCH[@]}" "${ADAPT[@]}" "$@"
  fi
  if has clean; then  # the source model alone on clean val, against its published top-1
    stage eval/evaluate.py "$CONFIG" "$ORIG" --originckpt "$ORIG" --metrics accuracy --ensemble first \
      --datatype clean --data_prefix1 "$DATA/ImageNet" "${SUBSET[@]}" --out "$OUT/${M}_clean.json" "${LAUNCH[@]}" "$@"
  fi
done
run "$PY" eval/report.py --results "$OUT"
