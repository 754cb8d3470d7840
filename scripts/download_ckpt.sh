#!/usr/bin/env bash
# Download every checkpoint of the full-scale pipeline (the table in sda/utils/weights.py) into DEST.
#
#   bash scripts/download_ckpt.sh [DEST]        (default DEST=pretrained_ckpt)
#
# Files already present (and verified) are skipped; partial downloads resume. The OpenMMLab file names
# end in the first 8 hex digits of the file's SHA-256, which is checked. DiT weights are CC BY-NC 4.0
# (non-commercial). Needs wget or curl, and python3 to read the table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
[ "$#" -le 1 ] || { usage >&2; die "expected at most one argument, the destination folder"; }
DEST=${1:-pretrained_ckpt}
[[ "$DEST" != -* ]] || { usage >&2; die "unknown option '$DEST'"; }
command -v python3 >/dev/null || die "python3 is needed to read the checkpoint table (sda/utils/weights.py)"
TABLE=$(python3 -m sda.utils.weights downloads)
mkdir -p "$DEST"

fetch() {  # fetch URL OUT [SHA256_PREFIX]
  local url=$1 out=$2 want=${3:-}
  if [ -s "$out" ]; then
    if [ -z "$want" ] || sha256sum "$out" | cut -c1-${#want} | grep -qx "$want"; then
      echo "ok       $out"; return 0
    fi
    echo "bad hash $out: downloading again" >&2; rm -f "$out"
  fi
  echo "fetch    $url"
  mkdir -p "$(dirname "$out")"
  if command -v wget >/dev/null; then wget -q --show-progress -c -O "$out.part" "$url"
  else curl -fL --retry 3 -C - -o "$out.part" "$url"; fi
  if [ -n "$want" ] && ! sha256sum "$out.part" | cut -c1-${#want} | grep -qx "$want"; then
    die "$out: SHA-256 does not start with $want; delete $out.part and retry"
  fi
  mv "$out.part" "$out"
}

while IFS=$'\t' read -r url file sha; do
  fetch "$url" "$DEST/$file" "$sha"
done <<< "$TABLE"
echo "all checkpoints are in $DEST/"
