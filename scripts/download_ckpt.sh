#!/usr/bin/env bash
# Download every checkpoint of the full-scale pipeline into pretrained_ckpt/.
#   bash scripts/download_ckpt.sh [DEST]        (default DEST=pretrained_ckpt)
# Files already present (and verified) are skipped; partial downloads resume.
# The OpenMMLab file names end in the first 8 hex digits of the file's SHA-256,
# which is checked. DiT weights are CC BY-NC 4.0 (non-commercial).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-pretrained_ckpt}
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
  if command -v wget >/dev/null; then wget -q --show-progress -c -O "$out.part" "$url"
  else curl -fL --retry 3 -C - -o "$out.part" "$url"; fi
  if [ -n "$want" ] && ! sha256sum "$out.part" | cut -c1-${#want} | grep -qx "$want"; then
    echo "error: $out: SHA-256 does not start with $want; delete $out.part and retry" >&2; exit 1
  fi
  mv "$out.part" "$out"
}

# Stage 1: class-conditional DiT-XL/2 (256 px) and its VAE (a local diffusers folder)
fetch https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt "$DEST/DiT-XL-2-256x256.pt"
VAE=https://huggingface.co/stabilityai/sd-vae-ft-ema/resolve/main
mkdir -p "$DEST/sd-vae-ft-ema"
fetch "$VAE/config.json" "$DEST/sd-vae-ft-ema/config.json"
fetch "$VAE/diffusion_pytorch_model.safetensors" "$DEST/sd-vae-ft-ema/diffusion_pytorch_model.safetensors"

# Stage 2: unconditional ADM (guided-diffusion, 256 px)
fetch https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt \
      "$DEST/256x256_diffusion_uncond.pt"

# Stages 3-4: the five mmcls v0 ImageNet classifiers (hash prefix from the file name)
MM=https://download.openmmlab.com/mmclassification/v0
for f in resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth \
         swin-transformer/swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth \
         convnext/convnext-tiny_3rdparty_32xb128_in1k_20220124-18abde00.pth \
         swin-transformer/swin_base_224_b16x64_300e_imagenet_20210616_190742-93230b0d.pth \
         convnext/convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth; do
  name=$(basename "$f")
  hash=${name##*-}; hash=${hash%.pth}
  fetch "$MM/$f" "$DEST/$name" "$hash"
done
echo "all checkpoints are in $DEST/"
