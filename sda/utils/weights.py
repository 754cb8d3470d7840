"""The released weights of the full-scale pipeline: one table of file names and addresses.

``scripts/download_ckpt.sh`` fetches exactly these files into ``pretrained_ckpt/`` and ``scripts/eval.sh``,
the stage defaults and the configs name them from here (tests/test_install_files.py checks that the
shell scripts agree with this table).
"""

from __future__ import annotations

import sys

PRETRAINED_DIR = "pretrained_ckpt"  # where scripts/download_ckpt.sh puts the weights

DIT_URL = "https://dl.fbaipublicfiles.com/DiT/models/"
VAE_REPOS = {"ema": "stabilityai/sd-vae-ft-ema", "mse": "stabilityai/sd-vae-ft-mse"}  # Hugging Face repos
VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")  # a local diffusers AutoencoderKL folder
ADM_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
ADM_UNCOND_256 = "256x256_diffusion_uncond.pt"
MMCLS_URL = "https://download.openmmlab.com/mmclassification/v0/"
# The official mmcls v0 ImageNet classifiers of the paper (path below MMCLS_URL); the file names end in the
# first 8 hex digits of the file's SHA-256.
CLASSIFIERS: dict[str, str] = {
    "ResNet50": "resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth",
    "SwinT": "swin-transformer/swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth",
    "ConvNeXtT": "convnext/convnext-tiny_3rdparty_32xb128_in1k_20220124-18abde00.pth",
    "SwinB": "swin-transformer/swin_base_224_b16x64_300e_imagenet_20210616_190742-93230b0d.pth",
    "ConvNeXtB": "convnext/convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth",
}
PAPER_MODELS: tuple[str, ...] = tuple(CLASSIFIERS)  # the table order of the paper


def dit_file(image_size: int) -> str:
    """The official DiT-XL/2 checkpoint of a resolution (256 or 512)."""
    return f"DiT-XL-2-{image_size}x{image_size}.pt"


def vae_dir(kind: str) -> str:
    """The local folder of the Stable Diffusion VAE ``kind`` ("ema" or "mse")."""
    return f"{PRETRAINED_DIR}/sd-vae-ft-{kind}"


def classifier_file(model: str) -> str:
    """The local path of a paper model's official checkpoint, e.g. ``pretrained_ckpt/resnet50_8xb32_...pth``."""
    return f"{PRETRAINED_DIR}/{CLASSIFIERS[model].rsplit('/', 1)[-1]}"


HUB = "hub"  # check against the hash the Hugging Face Hub publishes for the file (its ETag headers)


def downloads() -> list[tuple[str, str, str]]:
    """(url, destination below PRETRAINED_DIR, check) of every file download_ckpt.sh fetches. ``check``: a SHA-256
    prefix (the OpenMMLab file names end in one), ``hub`` (the Hub's published hash), or "" where no hash is
    published (DiT's and guided-diffusion's files): those are recorded on first download and checked after."""
    out = [(DIT_URL + dit_file(256), dit_file(256), "")]
    out += [
        (f"https://huggingface.co/{VAE_REPOS['ema']}/resolve/main/{f}", f"sd-vae-ft-ema/{f}", HUB) for f in VAE_FILES
    ]
    out.append((ADM_URL + ADM_UNCOND_256, ADM_UNCOND_256, ""))
    for path in CLASSIFIERS.values():
        name = path.rsplit("/", 1)[-1]
        out.append((MMCLS_URL + path, name, name.rsplit("-", 1)[-1].removesuffix(".pth")))
    return out


def _main(argv: list[str]) -> int:
    """``python -m sda.utils.weights downloads`` (tab-separated url, file, sha256 prefix) or ``classifier NAME``."""
    if argv[:1] == ["downloads"]:
        print("\n".join("\t".join(row) for row in downloads()))
        return 0
    if len(argv) == 2 and argv[0] == "classifier" and argv[1] in CLASSIFIERS:
        print(classifier_file(argv[1]))
        return 0
    print(f"usage: python -m sda.utils.weights downloads | classifier {{{','.join(CLASSIFIERS)}}}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
