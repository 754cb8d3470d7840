"""Target-set builders: an ImageNet-C style "-C" set of any class-folder set, and ImageNet-W.

``build_corrupted_set`` writes ``<out>/<corruption>/<severity>/<class>/<stem>.<ext>`` with the corruption
math of ``sda.eval.corruptions``; ``build_watermarked_set`` writes ImageNet-W's ``<out>/val/<class>/<stem>``.
Each image gets its own seed (``image_seed(seed, corruption, severity, relative path)``), so the output
does not depend on the number of workers; both are resumable (existing outputs are kept, a killed run's
temporary files removed) and atomic, and the output folder is claimed with the settings that change its
pixels (``build_manifest.json``), so a rerun with another seed, profile or quality is refused.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sda.eval.corruptions import FORMATS, JPEG_QUALITY, PROFILES, check_profile, corrupt, preprocess
from sda.utils.errors import UserError
from sda.utils.io import check_disjoint, check_writable_dir, list_images, load_rgb, save_image
from sda.utils.layout import CORRUPTIONS, SEVERITIES, parse_corruptions, parse_severities
from sda.utils.options import option, parse_options, to_argv
from sda.utils.runfolder import RunFolder, claimed
from sda.utils.seed import image_seed
from sda.utils.subset import SubsetOptions

MANIFEST = "build_manifest.json"  # the settings key of a built set (its folders may grow by corruption)
ALGORITHM = "corruptions-2"  # bump when a change alters the pixels (2: ImageMagick's truncation in motion blur)
FIX = "use another output folder, or the same settings to add to it"


def _out_name(rel: str, ext: str) -> str:
    p = Path(rel)
    return (p.parent / (p.stem + ext)).as_posix()


def _save(arr: np.ndarray | Image.Image, path: Path, fmt: str, quality: int) -> None:
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    if fmt == "jpeg":
        save_image(img, path, format="JPEG", quality=quality, optimize=True)
    else:
        save_image(img, path, format="PNG")


def _c_job(job: tuple) -> int:
    src, rel, todo, out_root, profile, fmt, quality, seed = job
    img = np.asarray(preprocess(load_rgb(Path(src) / rel), profile))  # (H, W, 3) uint8
    for name, sev, out_rel in todo:
        out = corrupt(img, name, sev, profile, image_seed(seed, name, sev, rel))
        _save(out, Path(out_root) / name / str(sev) / out_rel, fmt, quality)
    return len(todo)


def _run_jobs(fn, jobs: list, workers: int, total: int, desc: str) -> None:
    from sda.utils.progress import progress

    bar = progress(total=total, desc=desc)
    if workers <= 1:
        for j in jobs:
            bar.update(fn(j))
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            for n in pool.imap_unordered(fn, jobs, chunksize=4):
                bar.update(n)
    bar.close()


def _check_class_folders(src_root: Path, rels: list[str]) -> None:
    if not rels:
        raise UserError(f"no images found under {src_root}; expected <root>/<class>/<image>")
    flat = [r for r in rels if "/" not in r]
    if flat:
        raise UserError(f"{src_root / flat[0]} is not inside a class folder; expected <root>/<class>/<image>")


@dataclass(frozen=True)
class CorruptedSet(SubsetOptions):
    """A ``-C`` set to build: ``<out>/<corruption>/<severity>/<class>/<stem>.<ext>`` from ``<src>/<class>/<image>``.

    ``fmt``: "jpeg" (``.JPEG``, quality ``quality``) or "png"; None: the profile's. Validated once here.
    """

    src: Path = option(kind="positional", help="source root: <src>/<class>/<image>")
    out: Path = option(kind="positional", help="output root: <out>/<corruption>/<severity>/<class>/<image>")
    corruptions: tuple[str, ...] | str = option(
        "all", "'all' (the 15 of ImageNet-C) or a comma list: " + ", ".join(CORRUPTIONS), names=("--corruption",)
    )
    severities: tuple[int, ...] | str = option(
        ",".join(map(str, SEVERITIES)), "comma list of severities in 1..5", names=("--severity",)
    )
    profile: str = option(
        "imagenet",
        "imagenet: resize 256 + crop 224 + ImageNet-C parameters (default); cifar: CIFAR-10-C parameters at the "
        "native size (32 px images)",
        choices=sorted(PROFILES),
    )
    fmt: str | None = option(
        None,
        "jpeg (.JPEG) or png; default: jpeg for imagenet, png for cifar",
        names=("--format",),
        choices=sorted(FORMATS),
    )
    seed: int = option(0)
    workers: int = option(1, "processes")
    quality: int = option(JPEG_QUALITY, "JPEG quality (ImageNet-C: 85)")

    def __post_init__(self) -> None:
        prof = check_profile(self.profile)
        fmt = self.fmt or prof["format"]
        if fmt not in FORMATS:
            raise UserError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "src", Path(self.src))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "corruptions", tuple(parse_corruptions(self.corruptions)))
        object.__setattr__(self, "severities", tuple(parse_severities(self.severities)))
        if self.workers < 1 or not 1 <= self.quality <= 100:
            raise UserError("--workers must be at least 1 and --quality in 1..100")
        _ = self.subset  # checks --per-class

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> CorruptedSet:
        return parse_options(cls, "eval/build_c.py", "ImageNet-C style corruptions of a class-folder image set", argv)

    def to_argv(self) -> list[str]:
        return to_argv(self)


def build_corrupted_set(spec: CorruptedSet) -> dict[str, int]:
    """Write every corruption and severity of every image of a class-folder set.

    Resumable (existing outputs are kept) and atomic (each file is complete or absent). Returns counts:
    ``{"images": sources, "written": new files, "skipped": existing files}``.
    """
    rels = list_images(spec.src)
    _check_class_folders(spec.src, rels)
    rels = spec.subset.select(rels)
    check_disjoint(spec.src, spec.out, "the source folder", "the output folder")
    check_writable_dir(spec.out, "the output folder")
    key = {
        "algorithm": ALGORITHM,
        "profile": spec.profile,
        "format": spec.fmt,
        "quality": spec.quality,
        "seed": spec.seed,
        **({"subset": spec.subset.key()} if spec.subset.active else {}),  # (a whole set keeps its old key)
    }
    with claimed([RunFolder(spec.out, key, MANIFEST, fix=FIX)]) as (folder,):
        folder.claim()
        return _build_c(spec, rels)


def _build_c(spec: CorruptedSet, rels: list[str]) -> dict[str, int]:
    per_image = len(spec.corruptions) * len(spec.severities)
    jobs, total, skipped = [], 0, 0
    for rel in rels:
        out_rel = _out_name(rel, FORMATS[spec.fmt])
        todo = [
            (n, s, out_rel)
            for n in spec.corruptions
            for s in spec.severities
            if not (spec.out / n / str(s) / out_rel).exists()
        ]
        skipped += per_image - len(todo)
        if todo:
            jobs.append((str(spec.src), rel, todo, str(spec.out), spec.profile, spec.fmt, spec.quality, spec.seed))
            total += len(todo)
    _run_jobs(_c_job, jobs, spec.workers, total, desc="corrupt")
    return {"images": len(rels), "written": total, "skipped": skipped}


def _w_job(job: tuple) -> int:
    src, rel, out_path, fmt, quality = job
    img = preprocess(load_rgb(Path(src) / rel), "imagenet")  # 224 x 224
    _save(add_watermark(img), Path(out_path), fmt, quality)
    return 1


@functools.lru_cache(maxsize=4)
def _watermarker(size: int):
    from imagenet_w import AddWatermark

    return AddWatermark(image_size=size)


def add_watermark(img: Image.Image) -> Image.Image:
    """ImageNet-W's watermark (``imagenet_w.AddWatermark`` defaults) on an RGB image; returns RGB."""
    return _watermarker(img.size[0])(img)


@dataclass(frozen=True)
class WatermarkedSet(SubsetOptions):
    """ImageNet-W to build: ``<out>/val/<class>/<stem>.<ext>`` from ``<src>/<class>/<image>`` (resize 256, center
    crop 224, the ``imagenet-w`` package's watermark)."""

    src: Path = option(kind="positional", help="source root: <src>/<class>/<image>")
    out: Path = option(kind="positional", help="output root: <out>/val/<class>/<image>")
    fmt: str = option("jpeg", "jpeg (.JPEG, default) or png", names=("--format",), choices=sorted(FORMATS))
    quality: int = option(95, "JPEG quality")
    workers: int = option(1, "processes")

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise UserError(f"unknown output format {self.fmt!r}; use one of {', '.join(FORMATS)}")
        if self.workers < 1 or not 1 <= self.quality <= 100:
            raise UserError("--workers must be at least 1 and --quality in 1..100")
        object.__setattr__(self, "src", Path(self.src))
        object.__setattr__(self, "out", Path(self.out))
        _ = self.subset  # checks --per-class

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> WatermarkedSet:
        description = "ImageNet-W: the Whac-A-Mole watermark on the 224 center crop"
        return parse_options(cls, "eval/build_w.py", description, argv)

    def to_argv(self) -> list[str]:
        return to_argv(self)


def build_watermarked_set(spec: WatermarkedSet) -> dict[str, int]:
    """Write ImageNet-W ``<out>/val/<class>/<stem>.<ext>``: resize 256, center crop 224, watermark.

    Resumable and atomic like ``build_corrupted_set``.
    """
    src_root, out_root, fmt, quality = spec.src, spec.out, spec.fmt, spec.quality
    rels = list_images(src_root)
    _check_class_folders(src_root, rels)
    rels = spec.subset.select(rels)
    check_disjoint(src_root, out_root, "the source folder", "the output folder")
    check_writable_dir(out_root, "the output folder")
    key = {"algorithm": ALGORITHM, "watermark": "imagenet-w AddWatermark", "format": fmt, "quality": quality}
    if spec.subset.active:
        key["subset"] = spec.subset.key()
    with claimed([RunFolder(out_root, key, MANIFEST, fix=FIX)]) as (folder,):
        folder.claim()
        jobs = []
        for rel in rels:
            out = out_root / "val" / _out_name(rel, FORMATS[fmt])
            if not out.exists():
                jobs.append((str(src_root), rel, str(out), fmt, quality))
        _run_jobs(_w_job, jobs, spec.workers, len(jobs), desc="watermark")
    return {"images": len(rels), "written": len(jobs), "skipped": len(rels) - len(jobs)}
