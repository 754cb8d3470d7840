"""Stage 4 (eval) data: raw and projected target subsets, paired by relative path.

Layouts (checked when read):
- ImageNet-C style (``datatype="C"``): ``<root>/<corruption>/<severity>/<class>/<image>``;
- ImageNet-W style (``datatype="W"``): ``<root>/val/<class>/<image>``.
The label of an image is the index of its class folder in the sorted folder list of the raw set
(1000 wnids for ImageNet). A raw image and its projection are paired by relative path (the
reference paired them by list position).
"""

from __future__ import annotations

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


def _few(xs: Sequence[str], n: int = 3) -> str:
    return ", ".join(xs[:n]) + (f" (+{len(xs) - n} more)" if len(xs) > n else "")


def pair_images(raw_dir: Path, proj_dir: Path | None, allow_missing: bool = False) -> tuple[list[str], dict]:
    """Relative paths present in both folders; a missing or extra projection is an error naming it.

    With ``allow_missing`` the intersection is used and the counts report what was left out.
    """
    raw = [r for r in list_images(raw_dir) if "/" in r]
    if not raw:
        raise UserError(f"no images in class folders under {raw_dir}; expected <class>/<image> below it")
    if proj_dir is None:
        return raw, {"raw": len(raw), "paired": len(raw)}
    proj = [r for r in list_images(proj_dir) if "/" in r] if proj_dir.is_dir() else []
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


def build_subsets(
    datatype: str,
    raw_root: str | Path,
    proj_root: str | Path | None,
    corruptions: Sequence[str] = ("all",),
    severities: Sequence[int] = (5,),
    allow_missing: bool = False,
) -> list[SubsetPairs]:
    """Subsets of a C or W layout with their paired images, in table order."""
    raw_root = Path(raw_root)
    proj_root = Path(proj_root) if proj_root is not None else None
    if datatype == "C":
        names = parse_corruptions(corruptions)
        severities = parse_severities(severities)
        specs = [(f"{c}/{s}", c, s, Path(c) / str(s)) for s in severities for c in names]
    elif datatype == "W":
        specs = [("val", "ImageNet-W", None, Path("val"))]
    else:
        raise UserError(f"--datatype must be C or W, got {datatype!r}")
    subsets = []
    for key, corr, sev, sub in specs:
        raw_dir = raw_root / sub
        proj_dir = proj_root / sub if proj_root is not None else None
        classes = class_folders(raw_dir, "check --data_prefix1/--data_prefix2 and the layout")
        rels, counts = pair_images(raw_dir, proj_dir, allow_missing)
        subsets.append(SubsetPairs(key, corr, sev, raw_dir, proj_dir, classes, rels, counts))
    return subsets


class PairedImages(Dataset):
    """(index, raw image, projected image) tensors from an mmpretrain test pipeline.

    Images come out as the pipeline packs them: uint8 (3, H, W) in the loader's channel order
    (BGR for mmcv's LoadImageFromFile); ``Normalizer`` converts and normalizes on the device.
    A missing projection (no projected image needed) gives an empty tensor.
    """

    def __init__(self, subsets: Sequence[SubsetPairs], pipeline: Callable[[dict], dict], with_proj: bool):
        self.items = [(si, rel) for si, s in enumerate(subsets) for rel in s.rels]
        lookup = [{c: k for k, c in enumerate(s.classes)} for s in subsets]
        self.labels = np.array([lookup[si][rel.split("/")[0]] for si, rel in self.items], dtype=np.int64)
        self.subsets, self.pipeline, self.with_proj = subsets, pipeline, with_proj

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, path: Path) -> Tensor:
        return self.pipeline({"img_path": str(path)})["inputs"]  # (3, H, W) uint8

    def __getitem__(self, i: int) -> tuple[int, Tensor, Tensor, str]:
        """(index, raw, projected, error): an unreadable file gives empty tensors and an error naming it
        (raised by the loader's collate in the main process, so workers never die with a traceback)."""
        si, rel = self.items[i]
        s = self.subsets[si]
        path = s.raw_dir / rel
        try:
            raw = self._load(path)
            if self.with_proj:
                path = s.proj_dir / rel
                proj = self._load(path)
            else:
                proj = torch.empty(0)
        except Exception as e:  # noqa: BLE001 - mmcv / cv2 raise anything on a broken file
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            return i, torch.empty(0), torch.empty(0), f"cannot read image {path} ({reason}); remove or replace the file"
        return i, raw, proj, ""


def collate_pairs(items: Sequence[tuple[int, Tensor, Tensor, str]]) -> tuple[Tensor, Tensor, Tensor, str]:
    """Stack a batch of :class:`PairedImages` items: (index, raw, projected, the first error or "").

    Collation may run in a loader worker; the caller raises the error in the main process."""
    errors = [err for *_, err in items if err]
    if errors:
        return torch.empty(0), torch.empty(0), torch.empty(0), errors[0]
    idx = torch.tensor([it[0] for it in items], dtype=torch.long)  # (N,)
    raw = torch.stack([it[1] for it in items])  # (N, 3, H, W)
    proj = torch.stack([it[2] for it in items])  # (N, 3, H, W) or (N, 0)
    return idx, raw, proj, ""


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
