"""Stage 4 (eval) data: raw and projected target subsets, paired by relative path.

Layouts (checked when read):
- ImageNet-C style (``datatype="C"``): ``<root>/<corruption>/<severity>/<class>/<image>``;
- ImageNet-W style (``datatype="W"``): ``<root>/val/<class>/<image>``; ``datatype="clean"``: ImageNet val itself
  in that layout (the check of the source models against their published top-1).
The label of an image is the index of its class folder in the sorted folder list of the raw set
(1000 wnids for ImageNet). A raw image and its projection are paired by relative path (the
reference paired them by list position).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sda.utils.errors import UserError
from sda.utils.io import class_folders, list_images
from sda.utils.layout import parse_corruptions, parse_severities
from sda.utils.subset import Subset


@dataclass
class SubsetPairs:
    """One target subset (a corruption at a severity, or ImageNet-W) and its paired images."""

    key: str  # "gaussian_noise/5" or "val"
    corruption: str
    severity: int | None
    raw_dir: Path
    proj_dir: Path | None
    classes: list[str]
    rels: list[str]  # paired relative paths "<class>/<file>"
    counts: dict[str, int] = field(default_factory=dict)
    pur_dir: Path | None = None  # DiffPure's purified images (same names), when scored

    def image_dirs(self) -> dict[str, Path]:
        """The folders a relative path is read from: raw, and the projection / purification when present."""
        dirs = {"raw": self.raw_dir, "proj": self.proj_dir, "pur": self.pur_dir}
        return {k: v for k, v in dirs.items() if v is not None}


def _few(xs: Sequence[str], n: int = 3) -> str:
    return ", ".join(xs[:n]) + (f" (+{len(xs) - n} more)" if len(xs) > n else "")


def pair_images(
    raw_dir: Path, proj_dir: Path | None, allow_missing: bool = False, subset: Subset | None = None
) -> tuple[list[str], dict]:
    """Relative paths present in both folders (the ``subset``'s images of each); a missing or extra projection is
    an error naming it, and so is a projected folder that align made for another subset.

    With ``allow_missing`` the intersection is used and the counts report what was left out.
    """
    subset = subset or Subset()
    raw = subset.select(r for r in list_images(raw_dir) if "/" in r)
    if not raw:
        raise UserError(f"no images in class folders under {raw_dir}; expected <class>/<image> below it")
    if proj_dir is None:
        return raw, {"raw": len(raw), "paired": len(raw)}
    check_projected_subset(proj_dir, subset)
    proj = subset.select(r for r in list_images(proj_dir) if "/" in r) if proj_dir.is_dir() else []
    proj_set, raw_set = set(proj), set(raw)
    missing = [r for r in raw if r not in proj_set]
    extra = [r for r in proj if r not in raw_set]
    counts = {"raw": len(raw), "projected": len(proj), "missing": len(missing), "extra": len(extra)}
    if (missing or extra) and not allow_missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} raw images have no projection in {proj_dir} (e.g. {_few(missing)})")
        if extra:
            parts.append(f"{len(extra)} projected images have no raw image in {raw_dir} (e.g. {_few(extra)})")
        raise UserError(
            "; ".join(parts) + "; finish the projection or pass --allow-missing to score the images present in both"
        )
    paired = [r for r in raw if r in proj_set]
    if not paired:
        raise UserError(f"no image of {raw_dir} has a projection in {proj_dir}; check --data_prefix2")
    counts["paired"] = len(paired)
    return paired, counts


def check_projected_subset(proj_dir: Path, subset: Subset) -> None:
    """Refuse a projected folder whose align manifest records another subset than the one scored."""
    manifest = proj_dir / "align_manifest.json"
    if not manifest.is_file():
        return
    made = json.loads(manifest.read_text()).get("settings", {}).get("subset")
    if made is not None and made != subset.key():
        want = "the whole set" if not subset.active else f"--per-class {subset.per_class} --subset-seed {subset.seed}"
        raise UserError(
            f"{proj_dir} holds align's projections of the subset --per-class {made['per_class']} --subset-seed "
            f"{made['seed']}, but eval was asked for {want}; pass the same --per-class and --subset-seed to both"
        )


SET_NAMES = {"W": "ImageNet-W", "clean": "ImageNet val"}  # the one-folder layouts (<root>/val/<class>/)


@dataclass(frozen=True)
class Roots:
    """The roots of one layout: raw target images, their DDA projections, their DiffPure purifications."""

    raw: Path
    proj: Path | None = None
    pur: Path | None = None


def build_subsets(
    datatype: str,
    roots: Roots,
    corruptions: Sequence[str] = ("all",),
    severities: Sequence[int] = (5,),
    allow_missing: bool = False,
    subset: Subset | None = None,
) -> list[SubsetPairs]:
    """Subsets of a C or W layout with their paired images, in table order.

    The projections (and DiffPure's purifications) are paired by relative path; ``subset``: only its images
    (K per class, the same base images in every corruption and severity).
    """
    if datatype == "C":
        names = parse_corruptions(corruptions)
        severities = parse_severities(severities)
        specs = [(f"{c}/{s}", c, s, Path(c) / str(s)) for s in severities for c in names]
    elif datatype in SET_NAMES:
        specs = [("val", SET_NAMES[datatype], None, Path("val"))]
    else:
        raise UserError(f"--datatype must be C, W or clean, got {datatype!r}")
    subsets = []
    for key, corr, sev, sub in specs:
        raw_dir = Path(roots.raw) / sub
        proj_dir = Path(roots.proj) / sub if roots.proj is not None else None
        pur_dir = Path(roots.pur) / sub if roots.pur is not None else None
        classes = class_folders(raw_dir, "check --data_prefix1/--data_prefix2 and the layout")
        rels, counts = pair_images(raw_dir, proj_dir, allow_missing, subset)
        if pur_dir is not None:
            pur_rels, pur_counts = pair_images(raw_dir, pur_dir, allow_missing, subset)
            keep = set(pur_rels)
            rels = [r for r in rels if r in keep]
            counts = {**counts, **{f"diffpure_{k}": v for k, v in pur_counts.items()}, "paired": len(rels)}
        subsets.append(SubsetPairs(key, corr, sev, raw_dir, proj_dir, classes, rels, counts, pur_dir))
    return subsets


class PairedImages(Dataset):
    """(index, {view: image}, error) from an mmpretrain test pipeline; views = raw, and proj / pur if wanted.

    Images come out as the pipeline packs them: uint8 (3, H, W) in the loader's channel order
    (BGR for mmcv's LoadImageFromFile); ``Normalizer`` converts and normalizes on the device.
    """

    def __init__(self, subsets: Sequence[SubsetPairs], pipeline: Callable[[dict], dict], views: Sequence[str]):
        self.items = [(si, rel) for si, s in enumerate(subsets) for rel in s.rels]
        lookup = [{c: k for k, c in enumerate(s.classes)} for s in subsets]
        self.labels = np.array([lookup[si][rel.split("/")[0]] for si, rel in self.items], dtype=np.int64)
        self.subset_of = np.array([si for si, _ in self.items], dtype=np.int64)
        self.subsets, self.pipeline, self.views = subsets, pipeline, tuple(views)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, path: Path) -> Tensor:
        return self.pipeline({"img_path": str(path)})["inputs"]  # (3, H, W) uint8

    def __getitem__(self, i: int) -> tuple[int, dict[str, Tensor], str]:
        """(index, views, error): an unreadable file gives no views and an error naming it (raised by the
        caller in the main process, so loader workers never die with a traceback)."""
        si, rel = self.items[i]
        dirs = self.subsets[si].image_dirs()
        out: dict[str, Tensor] = {}
        for view in self.views:
            path = dirs[view] / rel
            try:
                out[view] = self._load(path)
            except Exception as e:  # noqa: BLE001 - mmcv / cv2 raise anything on a broken file
                reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                return i, {}, f"cannot read image {path} ({reason}); remove or replace the file"
        return i, out, ""


def collate_pairs(items: Sequence[tuple[int, dict[str, Tensor], str]]) -> tuple[Tensor, dict[str, Tensor], str]:
    """Stack a batch of :class:`PairedImages` items: (index (N,), {view: (N, 3, H, W)}, the first error or "").

    Collation may run in a loader worker; the caller raises the error in the main process."""
    errors = [err for *_, err in items if err]
    if errors:
        return torch.empty(0), {}, errors[0]
    idx = torch.tensor([it[0] for it in items], dtype=torch.long)  # (N,)
    views = {v: torch.stack([it[1][v] for it in items]) for v in items[0][1]}  # (N, 3, H, W) each
    return idx, views, ""


def check_num_classes(subsets: Sequence[SubsetPairs], n: int | None) -> None:
    """The sorted class folders are the labels: their number must be the head's ``num_classes``."""
    if n is None:
        return
    for s in subsets:
        if n != len(s.classes):
            raise UserError(
                f"{s.raw_dir} has {len(s.classes)} class folders but the model has {n} classes; "
                "the sorted class folders are the labels, so they must match the model's head"
            )
