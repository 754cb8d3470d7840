"""Stage 2 (align) layouts: where each input image is read, where its projection goes, and its seed key.

Layouts (inputs under ``--base_samples``, outputs under ``--save_dir``), as SDA's align.sh uses them:

    D  <base_samples>/<class>/<image>             -> <save_dir>/DiT-Syn/<class>/<image>
    C  <base_samples>/<corruption>/<severity>/<wnid>/<image>
                            -> <save_dir>/ImageNet-C-Syn/<corruption>/<severity>/<wnid>/<image>
    W  <base_samples>/val/<wnid>/<image>          -> <save_dir>/ImageNet-W-Syn/val/<wnid>/<image>

Every output keeps its input's relative path and file name, so the format follows the extension
(JPEG at PIL's default quality, PNG lossless) as in the reference; ``lossless`` writes PNG with the
same stem. Each image's noise comes from its own generator seeded by ``image_seed(seed, key)`` with
``key`` its path relative to ``base_samples``: results do not depend on the number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sda.utils.errors import UserError
from sda.utils.images import center_crop_arr
from sda.utils.io import is_image_file, load_rgb
from sda.utils.subset import Subset

SYN_ROOTS = {"D": "DiT-Syn", "C": "ImageNet-C-Syn", "W": "ImageNet-W-Syn"}
PATTERNS = {
    "D": "<base_samples>/<class>/<image>.png",
    "C": "<base_samples>/<corruption>/<severity>/<wnid>/<image>.JPEG",
    "W": "<base_samples>/val/<wnid>/<image>.JPEG",
}


@dataclass(frozen=True)
class ImageSet:
    """One input folder of a layout and its output folder (both hold ``<folder>/<image>`` files)."""

    name: str  # "DiT-Syn", "gaussian_noise/5", "val"
    in_dir: Path
    out_dir: Path
    key_prefix: str  # in_dir relative to base_samples, for the per-image seeds


@dataclass(frozen=True)
class Job:
    """One image to project: where it is read, where it is written, and its seed key."""

    src: Path
    out: Path
    key: str


def image_sets(
    base_samples: str | os.PathLike,
    save_dir: str | os.PathLike,
    datatype: str,
    corruptions: Sequence[str] = (),
    severities: Sequence[int] = (5,),
) -> list[ImageSet]:
    """The input/output folder pairs of a run; a missing input folder is a UserError naming the layout."""
    base, out_root = Path(base_samples), Path(save_dir) / SYN_ROOTS[datatype]
    if not base.is_dir():
        raise UserError(f"--base_samples {base} does not exist; expected {PATTERNS[datatype]}")
    if datatype == "D":
        sets = [ImageSet(SYN_ROOTS["D"], base, out_root, "")]
    elif datatype == "W":
        sets = [ImageSet("val", base / "val", out_root / "val", "val")]
    else:
        sets = [
            ImageSet(f"{c}/{s}", base / c / str(s), out_root / c / str(s), f"{c}/{s}")
            for c in corruptions
            for s in severities
        ]
    for s in sets:
        if not s.in_dir.is_dir():
            hint = ""
            if datatype == "C" and any(p.is_dir() for p in base.iterdir() if p.name.startswith("n")):
                hint = " (--base_samples looks like one severity folder; pass the ImageNet-C root)"
            raise UserError(
                f"input folder {s.in_dir} not found: datatype {datatype} expects {PATTERNS[datatype]}{hint}"
            )
        if s.in_dir.resolve() == s.out_dir.resolve():
            raise UserError(
                f"input and output folder are both {s.in_dir}: the projections would replace "
                f"the inputs; point --save_dir elsewhere (outputs go to <save_dir>/{SYN_ROOTS[datatype]})"
            )
    return sets


def list_set(s: ImageSet) -> list[str]:
    """Sorted ``<folder>/<image>`` paths of a set; images at other depths are not part of the layout."""
    rels = []
    for folder in sorted(p for p in s.in_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rels += [f"{folder.name}/{f.name}" for f in sorted(folder.iterdir()) if f.is_file() and is_image_file(f.name)]
    return rels


def output_name(rel: str, lossless: bool) -> str:
    """Same relative path and name; PNG with the same stem when ``lossless``."""
    return str(Path(rel).with_suffix(".png")) if lossless else rel


def discover_jobs(
    sets: Sequence[ImageSet], lossless: bool = False, num_samples: int | None = None, subset: Subset | None = None
) -> list[Job]:
    """All jobs of the sets in sorted order: the ``subset``'s images (K per class, the same base images in every
    set), and with ``num_samples`` only the first ones of each set in sorted order."""
    jobs: list[Job] = []
    for s in sets:
        rels = list_set(s)
        if not rels:
            raise UserError(
                f"no images in {s.in_dir}: expected <folder>/<image> files below it "
                f"(layout {s.in_dir}/<wnid or class>/<image>)"
            )
        if subset is not None:
            rels = subset.select(rels)
        if num_samples is not None:
            rels = rels[:num_samples]
        for rel in rels:
            key = f"{s.key_prefix}/{rel}" if s.key_prefix else rel
            jobs.append(Job(s.in_dir / rel, s.out_dir / output_name(rel, lossless), key))
    return jobs


def load_image(path: str | os.PathLike, image_size: int, resize: str = "adm") -> torch.Tensor:
    """An image file as the reference feeds it: (3, S, S) float32 in [-1, 1]. ``resize``: ``adm``, guided-diffusion's
    BOX halvings, BICUBIC and center crop (DDA); ``diffpure``, torchvision's ``Resize(S)`` of the short side
    (bilinear, antialiased) and no crop, as DiffPure's ImageNet-C loader (square inputs only)."""
    if resize == "diffpure":
        from torchvision.transforms import functional as TF

        img = TF.resize(load_rgb(path), image_size)
        if img.size != (image_size, image_size):
            raise UserError(f"{path}: DiffPure's loader needs square images ({img.size[0]}x{img.size[1]} after Resize)")
        arr = np.asarray(img, dtype=np.float32) / 255.0 * 2 - 1  # (S, S, 3): ToTensor, then (x - 0.5) * 2
    else:
        arr = center_crop_arr(load_rgb(path), image_size).astype(np.float32) / 127.5 - 1  # (S, S, 3)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, S, S)
