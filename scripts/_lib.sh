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

run() {  # run a command, or with DRY_RUN=1 print it (one line, shell-quoted) and run nothing
  if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}
