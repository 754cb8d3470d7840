#!/usr/bin/env bash
# Stage 2 (align): SDA's projection runs. The settings are align/project.py's defaults, the paper's: the
# 256 px unconditional ADM, 100 respaced steps, N 50, D 4, scale 6, batches of 10 (torchrun instead of mpiexec).
#   D  the synthetic set of Stage 1 (found through gen's manifest under $DATA) -> $DATA/DiT-Syn/<class>/
#   C  ImageNet-C ($DATA/ImageNet-C), all 15 corruptions -> $DATA/ImageNet-C-Syn/<corruption>/<severity>/<wnid>/
#   W  ImageNet-W ($DATA/ImageNet-W)                    -> $DATA/ImageNet-W-Syn/val/<wnid>/
# Every input is projected exactly once whatever NGPU; rerun the same command to resume.
#
#   bash scripts/align.sh [DC|all|D|C|W] [align/project.py flags ...]   (default DC: what Table 1 needs)
#   PER_CLASS=5 bash scripts/align.sh C              # 5 images per class of every corruption (the subset route)
#   NGPU=8 CORRUPTION=fog,snow SEVERITY=3,5 bash scripts/align.sh C
#   METHOD=diffpure bash scripts/align.sh C          # DiffPure's purification instead (-> $DATA/DiffPure/...)
#   DRY_RUN=1 bash scripts/align.sh                  # the commands and their plans (images, steps, time)
#
# Environment (defaults): NGPU (all visible GPUs, else 1 CPU process), DATA (data), PER_CLASS and
# SUBSET_SEED (every image; K per class chosen by the seed, the same images in every corruption and in eval),
# CORRUPTION (all: the 15), SEVERITY (5), CKPT (pretrained_ckpt/256x256_diffusion_uncond.pt), GEN_DIR (the
# one complete gen output under $DATA), PY (.venv/bin/python), DRY_RUN, METHOD (dda: the guided projection;
# diffpure: DiffPure as DDA's author ran it on ImageNet-C, the reverse VP-SDE from t* = 150 of 1000 with
# Euler-Maruyama steps of 0.001 (150 UNet forwards, no guidance), to $DATA/DiffPure/; diffpure-ddpm: DiffPure's
# DDPM runner instead; the D set is not purified). Extra flags, e.g. --guidance-norm sample --precision bf16.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
WHICH=DC
case "${1:-}" in
  all) WHICH=DCW; shift ;;
  DC|D|C|W) WHICH=$1; shift ;;
  ""|-*) ;;  # flags only: the default sets
  *) usage >&2; die "unknown set '$1': use DC, all, D, C or W" ;;
esac
need_python
resolve_ngpu
check_subset
DATA=${DATA:-data}
FLAGS=(--save_dir "$DATA/")
[ -z "${CKPT:-}" ] || FLAGS+=(--model_path "$CKPT")
case "${METHOD:-dda}" in
  dda) ;;
  diffpure|diffpure-ddpm)
    FLAGS=(--save_dir "$DATA/DiffPure/" "${FLAGS[@]:2}" --N 150)
    if [ "$METHOD" = diffpure ]; then FLAGS+=(--guidance sde); else FLAGS+=(--guidance none --timestep_respacing 1000); fi
    WHICH=${WHICH//D/}  # DiffPure purifies target images only
    [ -n "$WHICH" ] || die "METHOD=$METHOD purifies target sets (C, W), not the synthetic set D" ;;
  *) die "METHOD=$METHOD: use dda, diffpure or diffpure-ddpm" ;;
esac

if [[ $WHICH == *D* ]]; then
  if [ -z "${GEN_DIR:-}" ] && dry && ! plans; then
    GEN_DIR="$DATA/<gen output, found through its manifest>"  # DRY_RUN=commands: the commands only
  elif [ -z "${GEN_DIR:-}" ]; then
    GEN_DIR=$("$PY" -m sda.gen.plan find-output "$DATA") || exit 2
  fi
  need_input "$GEN_DIR" "run scripts/gen.sh first (or set GEN_DIR)"
  stage align/project.py --base_samples "$GEN_DIR" --datatype D "${FLAGS[@]}" "$@"
fi
if [[ $WHICH == *C* ]]; then
  need_input "$DATA/ImageNet-C" "download ImageNet-C there (see the README) or set DATA"
  stage align/project.py --base_samples "$DATA/ImageNet-C" --datatype C --corruption "${CORRUPTION:-all}" \
    --severity "${SEVERITY:-5}" "${SUBSET[@]}" "${FLAGS[@]}" "$@"
fi
if [[ $WHICH == *W* ]]; then
  need_input "$DATA/ImageNet-W" "build it with eval/build_w.py (see the README) or set DATA"
  stage align/project.py --base_samples "$DATA/ImageNet-W" --datatype W "${SUBSET[@]}" "${FLAGS[@]}" "$@"
fi
