"""Helpers for the align stage tests: a tiny ADM UNet and D/C/W input layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sda.align import AlignConfig, ProjectionConfig, project_folder
from sda.models.adm_flags import create_model

# Flags as the CLI takes them (image_size 16 keeps every test fast; D=4 divides it).
TINY_FLAGS = dict(
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
FAST = dict(N=2, D=4, scale=6.0, batch_size=4)


def tiny_unet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(**TINY_FLAGS)
    with torch.no_grad():
        for p in model.parameters():  # the zero-initialised output layers would make eps == 0
            p.add_(0.05 * torch.randn_like(p))
    return model


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
            write_images(root / prefix / cls, names, seed=10 * i + j)
            rels += [str(Path(prefix) / cls / n) for n in names]
    return rels


PROJECTION_KEYS = ("N", "D", "scale", "guidance_norm", "lowpass", "clip_denoised")
RUN_KEYS = ("rank", "world_size", "device")


def project_flat(model: torch.nn.Module, diffusion, **kw) -> dict:
    """``project_folder`` with the settings given flat (N=, D=, base_samples=, ...), as the tests write them."""
    projection = ProjectionConfig(**{k: kw.pop(k) for k in PROJECTION_KEYS if k in kw})
    run = {k: kw.pop(k) for k in RUN_KEYS if k in kw}
    return project_folder(model, diffusion, AlignConfig(projection=projection, **kw), **run)
