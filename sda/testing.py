"""Tiny models of the official architectures and small generated image trees: the test suite's models and
the GPU check's --smoke run (like ``torch.testing``, shipped so both use one definition).

Imported as ``sda.testing`` by the tests and by ``benchmarks/device_check.py --smoke``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sda.gen.models import SD_VAE_CONFIG
from sda.models.adm_flags import create_model
from sda.models.dit import build_dit

# ADM flags as the CLI takes them (image_size 16 keeps every test fast; D=4 divides it).
TINY_ADM = dict(
    image_size=16,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2",
    attention_resolutions="8",
    learn_sigma=True,
    num_head_channels=16,
    resblock_updown=True,
    use_scale_shift_norm=True,
)


def tiny_unet(seed: int = 0, **flags) -> torch.nn.Module:
    """An unconditional ADM UNet with random, non-trivial weights (the zero-initialised output layers would
    make eps == 0)."""
    torch.manual_seed(seed)
    model = create_model(**{**TINY_ADM, **flags})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def adm_cli_flags(flags: dict | None = None) -> list[str]:
    """``--name value`` pairs of ADM model flags (the tiny ones by default), as SDA's MODEL_FLAGS."""
    return [a for k, v in (flags or TINY_ADM).items() for a in (f"--{k}", str(v))]


def tiny_dit(
    path: Path,
    name: str = "DiT-d2w64h2/4",
    input_size: int = 16,
    num_classes: int = 10,
    in_channels: int = 3,
    seed: int = 0,
) -> Path:
    """A random DiT checkpoint with non-trivial outputs (the zero-initialised modulation and head get noise)."""
    model = build_dit(name, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "adaLN_modulation" in n or n.startswith("final_layer"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


# The SD VAE's layout (4 latent channels, 8x downsampling) at a tiny width.
TINY_VAE = {
    **SD_VAE_CONFIG,
    "layers_per_block": 1,
    "block_out_channels": (8,) * 4,
    "norm_num_groups": 4,
    "sample_size": 32,
}


def tiny_vae(path: Path) -> Path:
    """A tiny AutoencoderKL with the SD VAE's interface, saved locally as a diffusers folder."""
    from diffusers.models import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE).save_pretrained(path)
    return path


def write_images(folder: Path, names: list[str], seed: int = 0, size: tuple[int, int] = (24, 20)) -> None:
    """Random RGB images (W, H) = size, format by extension."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / n)


def make_layout(
    root: Path,
    datatype: str,
    corruptions=("gaussian_noise",),
    severities=(5,),
    per_class: int = 2,
    classes=("n01", "n02"),
    ext: str = ".JPEG",
    size: tuple[int, int] = (24, 20),
) -> list[str]:
    """Build a D/C/W input tree under root; returns the relative input paths (to root)."""
    rels = []
    if datatype == "C":
        prefixes = [f"{c}/{s}" for c in corruptions for s in severities]
    elif datatype == "W":
        prefixes = ["val"]
    else:
        prefixes = [""]
    for i, prefix in enumerate(prefixes):
        for j, cls in enumerate(classes):
            names = [f"img{k}{ext}" for k in range(per_class)]
            write_images(root / prefix / cls, names, seed=10 * i + j, size=size)
            rels += [str(Path(prefix) / cls / n) for n in names]
    return rels


def tree_bytes(root: Path, suffixes: tuple[str, ...] = (".png", ".jpeg", ".jpg")) -> dict[str, bytes]:
    """Every image file below ``root`` (relative path -> bytes), to compare two runs byte for byte."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in suffixes
    }


def stray_files(root: Path) -> list[str]:
    """Temporary files or locks left below ``root`` (none may stay after a completed run)."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob(".*") if p.name.endswith(".tmp") or p.name == ".lock"
    )


def tiny_classifier_config(path: Path, num_classes: int = 2, size: int = 24) -> Path:
    """An MMPreTrain test config of a tiny ResNet (the official classifier code, 4 base channels) for images of
    about ``size`` px, written to ``path`` (its stem names the model in eval's reports)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, base_channels=4, stem_channels=4, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes={num_classes}, in_channels=32))
data_preprocessor = dict(num_classes={num_classes}, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale={size}, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size={size - 4}),
    dict(type='PackInputs'),
]
"""
    )
    return path


def tiny_classifier(config: Path, out: Path, seed: int = 0) -> Path:
    """Random weights for ``config``'s model with a sharp head (varied predictions), saved as MMPreTrain does."""
    from mmengine.config import Config
    from mmpretrain.models import build_classifier

    torch.manual_seed(seed)
    model = build_classifier(Config.fromfile(str(config)).model)
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 3.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": {}}, out)
    return out


# ----------------------------------------------------------------------------- tiny fine-tunes (finetune/train.py)
REPO = Path(__file__).resolve().parents[1]  # a source checkout's root (the tests run from one)
FINETUNE_NUM_CLASSES = 4  # the tiny fine-tunes' class count


def make_class_folders(root: Path, n_classes: int = FINETUNE_NUM_CLASSES, per_class: int = 12) -> Path:
    """32x32 RGB PNGs; class k is a noisy image of colour k (an easy task that a few steps learn)."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (n_classes, 3))
    for k in range(n_classes):
        (root / f"{k:04d}").mkdir(parents=True)
        for i in range(per_class):
            img = colours[k] + rng.normal(0, 30, (32, 32, 3))  # (H, W, 3)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / f"{k:04d}" / f"{i:06d}.png")
    return root


def finetune_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """finetune/train.py TinyResNet on tmp_path/data, writing tmp_path/work and tmp_path/out/Tiny.pth."""
    cmd = [
        sys.executable,
        str(REPO / "finetune" / "train.py"),
        "TinyResNet",
        "--data-root",
        str(tmp_path / "data"),
        "--work-dir",
        str(tmp_path / "work"),
        "--final-ckpt",
        str(tmp_path / "out" / "Tiny.pth"),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


TINY_FINETUNE_OPTS = [  # --cfg-options of the tiny fine-tunes: 4 classes, small batches, a log per step
    "load_from=None",
    f"model.head.num_classes={FINETUNE_NUM_CLASSES}",
    f"data_preprocessor.num_classes={FINETUNE_NUM_CLASSES}",
    "train_dataloader.batch_size=8",
    "optim_wrapper.optimizer.lr=0.02",
    "default_hooks.logger.interval=1",
    "log_processor.window_size=1",
]
