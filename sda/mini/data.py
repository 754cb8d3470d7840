"""Data helpers shared by the mini benchmarks: stratified subsets, the corrupted "-C" sets, low-passed copies.

Every benchmark writes class-folder splits ``<data>/<split>/<class:04d>/<file>.png`` (``sda.mini.digits``,
``sda.mini.glyphs``); these helpers only read that layout.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sda.utils.errors import UserError
from sda.utils.io import list_images, load_rgb, save_image


def copy_once(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` unless it is there, atomically (a killed copy leaves no partial ``dst``)."""
    if not dst.exists():
        from sda.utils.io import atomic_write

        with open(src, "rb") as f, atomic_write(dst) as g:
            shutil.copyfileobj(f, g)


def stratified_subset(src: Path, dst: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` sorted images of each class folder of ``src`` into ``dst`` (kept if there)."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        for rel in list_images(cls)[:per_class]:
            copy_once(cls / rel, dst / cls.name / rel)
    return dst


def rotated_c_subset(full_c: Path, dst: Path, per_class: int, severity: int) -> Path:
    """A "-C" subset with ``per_class`` images per class and corruption, rotated so that corruptions use
    different base images where the split allows: corruption ``i`` (ImageNet-C order) takes, in each class,
    the sorted images ``(i * per_class + j) mod n`` for ``j < per_class``. ``full_c`` is a "-C" set of the whole
    split (``<corruption>/<severity>/<class>/<file>``, as ``eval/build_c.py`` writes it; each image's pixels do
    not depend on which others are built); the chosen files are copied into ``dst`` (kept if there)."""
    from sda.utils.layout import CORRUPTIONS

    for i, corruption in enumerate(CORRUPTIONS):
        src = full_c / corruption / str(severity)
        for cls in sorted(p for p in src.iterdir() if p.is_dir()):
            names = list_images(cls)
            for j in range(min(per_class, len(names))):
                name = names[(i * per_class + j) % len(names)]
                copy_once(cls / name, dst / corruption / str(severity) / cls.name / name)
    return dst


def build_corrupted_splits(
    out: str | os.PathLike,
    splits: Sequence[str] = ("val", "test"),
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (5,),
    seed: int = 0,
    workers: int = 1,
) -> list[Path]:
    """Build ``<out>/<split>-C`` from ``<out>/<split>`` with the eval stage's ImageNet-C builder.

    CIFAR-10-C severity profile (sized for 32 px), PNG, ImageNet-C layout
    ``<corruption>/<severity>/<class>/<file>.png``. ``corruptions=None`` means all 15.
    """
    from sda.eval.builders import CorruptedSet, build_corrupted_set

    built = []
    for name in splits:
        src = Path(out) / name
        if not src.is_dir():
            raise UserError(f"{src} not found; run mini/prepare_data.py --out {out} first")
        spec = CorruptedSet(
            src=src,
            out=Path(out) / f"{name}-C",
            corruptions=tuple(corruptions) if corruptions is not None else "all",
            severities=tuple(severities),
            profile="cifar",
            fmt="png",
            seed=seed,
            workers=workers,
        )
        build_corrupted_set(spec)
        built.append(spec.out)
    return built


def lowpass_folder(src: Path, dst: Path, D: int) -> Path:
    """Write DDA's low-pass filter of every image of ``src`` (cubic down by D and back up) to ``dst``, same names.

    The band the projection's guidance keeps: gate (e) trains and scores a classifier on such images.
    """
    files = list_images(src)
    if not files:
        raise UserError(f"no images under {src}")
    for rel in files:
        x = torch.from_numpy(np.array(load_rgb(src / rel))).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
        out = lowpass_uint8(x, D)[0].permute(1, 2, 0).numpy()  # (H, W, 3) uint8
        save_image(Image.fromarray(out, mode="RGB"), dst / rel, format="PNG")
    return dst


def lowpass_uint8(x: torch.Tensor, D: int) -> torch.Tensor:
    """DDA's low-pass filter of uint8 images (B, 3, H, W), computed in float64 and rounded back to uint8."""
    from sda.align.lowpass import LowPass

    lpf = LowPass(x.shape[-2], x.shape[-1], D, dtype=torch.float64)
    y = lpf(x.double() / 255.0)  # (B, 3, H, W)
    return (y * 255.0).round().clamp(0, 255).to(torch.uint8)
