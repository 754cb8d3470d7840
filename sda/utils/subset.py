"""One subset of a target set, defined once and used by every stage (``--per-class K --subset-seed S``).

K images of each class, chosen by the seed on *base image names* (a file's class folder and stem): ImageNet-C's
files share their names with ImageNet val, so the same images are taken in every corruption and severity, in
ImageNet-W, and in their projections. ``eval/build_c.py`` / ``build_w.py`` build only the subset, ``align/project.py``
projects only it, ``eval/evaluate.py`` scores exactly it; each records it in its manifest and run key, and eval
refuses a projected folder made for another subset. A class with fewer than K images keeps them all.

The choice is a rank by a hash of (seed, class, stem), so it does not depend on which other files are present:
the K chosen names of a full class are the K chosen names of any folder that holds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass
from pathlib import PurePosixPath
from typing import Any

from sda.utils.errors import UserError
from sda.utils.options import option


def base_name(rel: str) -> str:
    """``.../<class>/<stem>.<ext>`` -> ``<class>/<stem>``: the clean image a file derives from."""
    p = PurePosixPath(rel)
    return f"{p.parent.name}/{p.stem}"


@dataclass(frozen=True)
class Subset:
    """K images per class (None: every image), chosen by ``seed``."""

    per_class: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.per_class is not None and self.per_class < 1:
            raise UserError(f"--per-class {self.per_class}: use at least 1 image per class (or leave it out for all)")

    @property
    def active(self) -> bool:
        return self.per_class is not None

    def key(self) -> dict[str, Any] | None:
        """What run keys and manifests record (None: the whole set)."""
        return {"per_class": self.per_class, "seed": self.seed} if self.active else None

    def _rank(self, cls: str, stem: str) -> str:
        return hashlib.sha256(f"{self.seed}/{cls}/{stem}".encode()).hexdigest()

    def chosen(self, rels: Iterable[str]) -> set[str]:
        """The base names the subset keeps among ``rels`` (relative paths ``.../<class>/<file>``)."""
        by_class: dict[str, set[str]] = {}
        for rel in rels:
            cls, stem = base_name(rel).split("/")
            by_class.setdefault(cls, set()).add(stem)
        keep: set[str] = set()
        for cls, stems in by_class.items():
            ranked = sorted(stems, key=lambda s, c=cls: self._rank(c, s))
            keep.update(f"{cls}/{s}" for s in (ranked if self.per_class is None else ranked[: self.per_class]))
        return keep

    def select(self, rels: Iterable[str]) -> list[str]:
        """``rels`` whose base image the subset keeps, in their order."""
        rels = list(rels)
        if not self.active:
            return rels
        keep = self.chosen(rels)
        return [r for r in rels if base_name(r) in keep]


@dataclass(frozen=True)
class SubsetOptions:
    """``--per-class K --subset-seed S``, declared once for every config that reads a target set (build_c,
    build_w, align, eval); keyword-only, after each config's own fields."""

    _: KW_ONLY
    per_class: int | None = option(
        None, "only K images per class, chosen by --subset-seed on base image names (default: every image)",
        names=("--per-class",),
    )  # fmt: skip
    subset_seed: int = option(0, "the seed of the --per-class choice", names=("--subset-seed",))

    @property
    def subset(self) -> Subset:
        return Subset(self.per_class, self.subset_seed)
