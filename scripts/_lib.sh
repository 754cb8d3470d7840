# Shared by the scripts (sourced, not run): the Python to use, the GPU count, --help, one-line errors.
# Every script's usage is its header comment (the lines starting with '#' after the shebang).

PY=${PY:-.venv/bin/python}

usage() {  # print the calling script's header comment
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() {  # one line on stderr, exit 2
  echo "error: $*" >&2
  exit 2
}

help_requested() {  # true when any argument asks for help
  local a
  for a in "$@"; do
    case "$a" in -h|--help) return 0 ;; esac
  done
  return 1
}

need_python() {
  [ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1 || die "no Python at $PY: run 'bash scripts/setup.sh' first, or set PY"
}

gpu_count() {  # visible CUDA GPUs (0 without a GPU, without nvidia-smi, or without torch)
  "$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0
}

resolve_ngpu() {  # NGPU from the environment, else every visible GPU, at least 1 (one CPU process)
  if [ -z "${NGPU:-}" ]; then
    NGPU=$(gpu_count)
    [ "$NGPU" -ge 1 ] 2>/dev/null || NGPU=1
  fi
  [[ "$NGPU" =~ ^[1-9][0-9]*$ ]] || die "NGPU=$NGPU is not a positive number of GPUs (processes)"
}

launcher() {  # the command prefix that runs a Python entry point on $NGPU processes
  if [ "$NGPU" -gt 1 ]; then
    echo "$PY -m torch.distributed.run --standalone --nproc_per_node $NGPU"
  else
    echo "$PY"
  fi
}

dry() {  # DRY_RUN set to anything but "" or 0: print the commands, run nothing
  [ -n "${DRY_RUN:-}" ] && [ "${DRY_RUN}" != 0 ]
}

plans() {  # with DRY_RUN (but not DRY_RUN=commands): also each stage's plan and the check of its inputs
  dry && [ "${DRY_RUN}" != commands ]
}

run() {  # run a command, or with DRY_RUN print it (one line, shell-quoted) and run nothing
  if dry; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

stage() {  # stage SCRIPT ARGS...: a stage's entry point on $NGPU processes; with DRY_RUN the command, then its
  # plan (SCRIPT --plan: the work, a time estimate where measured, and a check of its inputs)
  if dry; then
    run $(launcher) "$@"
    if plans; then NGPU=$NGPU "$PY" "$@" --plan; fi
  else
    $(launcher) "$@"
  fi
}

planned() {  # true when an earlier stage of this run will make PATH (a "path=images" line of $SDA_PLANNED)
  local want line
  want=$(realpath -m "$1")
  while IFS= read -r line; do
    [ -n "$line" ] && [ "$(realpath -m "${line%=*}")" = "$want" ] && return 0
  done <<< "${SDA_PLANNED:-}"
  return 1
}

need_input() {  # need_input PATH FIX: PATH exists, or (with DRY_RUN) an earlier stage of this run makes it
  if [ -e "$1" ] || { dry && ! plans; }; then return 0; fi
  if dry && planned "$1"; then echo "# $1: made by an earlier stage of this run"; return 0; fi
  die "$1 not found; $2"
}

check_subset() {  # PER_CLASS / SUBSET_SEED: the one target subset of every stage (empty PER_CLASS: every image)
  [ -z "${PER_CLASS:-}" ] || [[ "$PER_CLASS" =~ ^[1-9][0-9]*$ ]] \
    || die "PER_CLASS=$PER_CLASS is not a positive number of images per class"
  [[ "${SUBSET_SEED:-0}" =~ ^[0-9]+$ ]] || die "SUBSET_SEED=$SUBSET_SEED is not a non-negative integer"
  SUBSET=()
  [ -z "${PER_CLASS:-}" ] || SUBSET=(--per-class "$PER_CLASS" --subset-seed "${SUBSET_SEED:-0}")
}
