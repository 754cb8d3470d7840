#!/usr/bin/env bash
# Table 1 (ImageNet-C, severity 5) by one of three routes, ending in $OUT/table1.{md,json,csv}: every number
# with its 95% interval beside the published one. Run it with DRY_RUN=1 first: every stage prints its command
# and plan (images, model steps and forwards, a time estimate where benchmarks/bench_align.py measured this
# machine) and checks that its inputs exist or are made by an earlier stage of the route.
#
#   bash scripts/table1.sh quick  [Model ...]   # the authors' ImageNet-C-Syn and fine-tuned checkpoints: eval only
#   PER_CLASS=5 bash scripts/table1.sh subset [Model ...]   # K target images per class through every stage
#   bash scripts/table1.sh full   [Model ...]   # every image: gen, align D and C, finetune, eval
#   DRY_RUN=1 PER_CLASS=5 bash scripts/table1.sh subset     # the plan of every stage; runs nothing
#
# quick reads $DATA/ImageNet-C, $DATA/ImageNet-C-Syn and $FT_DIR/<Model>.pth as the authors released them (see
# the README); subset and full make them: gen.sh (GEN_PER_CLASS synthetic images per class, default 50 as the
# paper), align.sh D and C (PER_CLASS target images per class, default 5 for subset), finetune.sh per model,
# eval.sh. Models: default all five. Environment: as the stage scripts (NGPU, DATA, OUT, FT_DIR, PER_CLASS,
# SUBSET_SEED, GEN_PER_CLASS, PY, DRY_RUN).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
[ "$#" -ge 1 ] || { usage >&2; die "name a route: quick, subset or full"; }
ROUTE=$1
shift
case "$ROUTE" in
  quick|full) ;;
  subset) export PER_CLASS=${PER_CLASS:-5} ;;
  *) usage >&2; die "unknown route '$ROUTE': use quick, subset or full" ;;
esac
[ "$ROUTE" != full ] || [ -z "${PER_CLASS:-}" ] || die "route full uses every image: unset PER_CLASS (or use subset)"
for m in "$@"; do [[ "$m" != -* ]] || die "table1.sh takes model names only; pass stage flags to the stage scripts"; done
need_python
resolve_ngpu
check_subset
export NGPU DATA=${DATA:-data} FT_DIR=${FT_DIR:-finetuned_ckpt} SDA_PLANNED=${SDA_PLANNED:-}
MODELS=("$@")
[ "${#MODELS[@]}" -gt 0 ] || MODELS=(ResNet50 SwinT ConvNeXtT SwinB ConvNeXtB)
plan_made() {  # plan_made PATH [IMAGES]: with DRY_RUN, a later stage may read PATH before it exists
  if dry; then SDA_PLANNED+=$'\n'"$1=${2:-0}"; fi
}
say() { echo "== $*"; }

if [ "$ROUTE" != quick ]; then
  say "stage 1: gen"
  if dry; then
    PLAN=$(bash scripts/gen.sh)
    echo "$PLAN"
    GEN_DIR=$(sed -n 's/^  output: //p' <<< "$PLAN")
    GEN_IMAGES=$(sed -n 's/^  images: \([0-9,]*\) .*/\1/p' <<< "$PLAN" | tr -d ,)
    plan_made "$GEN_DIR" "$GEN_IMAGES"
    export GEN_DIR
  else
    bash scripts/gen.sh
  fi
  say "stage 2: align (D: the synthetic set; C: ImageNet-C${PER_CLASS:+, $PER_CLASS per class})"
  bash scripts/align.sh D
  plan_made "$DATA/DiT-Syn" "${GEN_IMAGES:-0}"
  bash scripts/align.sh C
  plan_made "$DATA/ImageNet-C-Syn"
  say "stage 3: finetune"
  for M in "${MODELS[@]}"; do
    bash scripts/finetune.sh "$M"
    plan_made "$FT_DIR/$M.pth"
  done
fi
say "stage 4: eval and the report"
bash scripts/eval.sh "${MODELS[@]}"
