#!/usr/bin/env bash
# Download every checkpoint of the full-scale pipeline (the table in sda/utils/weights.py) into DEST.
#
#   bash scripts/download_ckpt.sh [DEST]        (default DEST=pretrained_ckpt)
#
# Every file is checked where a hash is published: the five OpenMMLab classifiers against the SHA-256 prefix
# in their names; the VAE's files (Hugging Face) against the hash the Hub publishes for them (needs curl; the
# safetensors file by SHA-256, config.json by its git blob hash). DiT-XL-2-256x256.pt and
# 256x256_diffusion_uncond.pt have no published hash: their SHA-256 is recorded in DEST/SHA256SUMS on the first
# download and checked on every later run (so a changed file is caught, a wrong first download is not). The
# script ends by listing what it could not check against a published hash. Files already present (and
# verified) are skipped; partial downloads resume. DiT weights are CC BY-NC 4.0 (non-commercial).
# Needs curl or wget, and python3 to read the table (SDA_DOWNLOADS may hold the table's lines instead).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_lib.sh
if help_requested "$@"; then usage; exit 0; fi
[ "$#" -le 1 ] || { usage >&2; die "expected at most one argument, the destination folder"; }
DEST=${1:-pretrained_ckpt}
[[ "$DEST" != -* ]] || { usage >&2; die "unknown option '$DEST'"; }
command -v python3 >/dev/null || die "python3 is needed to read the checkpoint table (sda/utils/weights.py)"
TABLE=${SDA_DOWNLOADS:-$(python3 -m sda.utils.weights downloads)}  # url<TAB>file<TAB>check lines
mkdir -p "$DEST"
SUMS=$DEST/SHA256SUMS
touch "$SUMS"
UNCHECKED=()

hub_hash() {  # the Hub's hash of URL: "sha256 HEX" (LFS files) or "sha1 HEX" (git blob of small files); "" if unknown
  command -v curl >/dev/null || return 0
  local headers
  headers=$(curl -fsIL "$1" 2>/dev/null | tr -d '\r') || return 0
  local lfs etag
  lfs=$(grep -i '^x-linked-etag:' <<< "$headers" | tail -1 | sed 's/^[^:]*: *//; s/"//g; s/^W\///')
  etag=$(grep -i '^etag:' <<< "$headers" | tail -1 | sed 's/^[^:]*: *//; s/"//g; s/^W\///')
  if [[ "$lfs" =~ ^[0-9a-f]{64}$ ]]; then echo "sha256 $lfs"
  elif [[ "$etag" =~ ^[0-9a-f]{40}$ ]]; then echo "sha1 $etag"; fi
}

matches() {  # matches FILE KIND HEX: the file's hash (sha256 prefix, or git blob sha1) is HEX
  case "$2" in
    sha256) sha256sum "$1" | cut -c1-${#3} | grep -qx "$3" ;;
    sha1) command -v git >/dev/null && [ "$(git hash-object --no-filters "$1")" = "$3" ] ;;
  esac
}

expected() {  # expected URL FILE CHECK -> "KIND HEX", or "" (then the file is recorded in SHA256SUMS)
  local url=$1 file=$2 check=$3
  if [ "$check" = hub ]; then
    hub_hash "$url"
  elif [ -n "$check" ]; then
    echo "sha256 $check"
  else
    local rec
    rec=$(awk -v f="$file" '$2 == f { print $1 }' "$SUMS")
    [ -z "$rec" ] || echo "sha256 $rec"
  fi
}

fetch() {  # fetch URL FILE CHECK
  local url=$1 file=$2 check=$3 out=$DEST/$2 want kind hex
  want=$(expected "$url" "$file" "$check")
  kind=${want%% *} hex=${want#* }
  if [ -s "$out" ]; then
    if [ -z "$want" ] || matches "$out" "$kind" "$hex"; then
      echo "ok       $out"
    else
      echo "bad hash $out: downloading again" >&2; rm -f "$out"
    fi
  fi
  if [ ! -s "$out" ]; then
    echo "fetch    $url"
    mkdir -p "$(dirname "$out")"
    if command -v curl >/dev/null; then curl -fsSL --retry 3 -C - -o "$out.part" "$url"
    else wget -q --show-progress -c -O "$out.part" "$url"; fi
    if [ -n "$want" ] && ! matches "$out.part" "$kind" "$hex"; then
      die "$out: its $kind hash is not the expected $hex; delete $out.part and retry (for a recorded hash: if the file changed upstream on purpose, delete its line in $SUMS)"
    fi
    mv "$out.part" "$out"
  fi
  if [ -z "$check" ] && [ -z "$want" ]; then  # no published hash: record this one for later runs
    echo "$(sha256sum "$out" | cut -d' ' -f1)  $file" >> "$SUMS"
  fi
  if [ -z "$want" ] || [ -z "$check" ]; then
    UNCHECKED+=("$file")
  fi
}

while IFS=$'\t' read -r url file check; do
  fetch "$url" "$file" "$check"
done <<< "$TABLE"
echo "all checkpoints are in $DEST/"
if [ "${#UNCHECKED[@]}" -gt 0 ]; then
  echo "not checked against a published hash (none is published, or the Hub did not answer):"
  printf '  %s\n' "${UNCHECKED[@]}"
  echo "their SHA-256 is recorded in $SUMS and checked on every later run"
fi
