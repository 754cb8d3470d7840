"""The K-per-class subset, defined once: chosen on base image names, the same in every corruption and stage;
build_c and align make only it, eval scores exactly it and refuses projections of another subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sda.utils.errors import UserError
from sda.utils.subset import Subset, base_name


def _names(k_classes: int = 3, per: int = 6, ext: str = ".JPEG", prefix: str = "") -> list[str]:
    return [f"{prefix}n{c:02d}/img{i}{ext}" for c in range(k_classes) for i in range(per)]


def test_k_per_class_on_base_names_whatever_the_folder() -> None:
    s = Subset(2, seed=3)
    val = s.select(_names())
    assert len(val) == 6 and {r.split("/")[0] for r in val} == {"n00", "n01", "n02"}
    in_c = s.select(_names(ext=".png", prefix="fog/5/"))  # a corruption folder: other extension, same names
    assert [base_name(r) for r in in_c] == [base_name(r) for r in val]
    assert s.select(val) == val  # a folder holding only the subset keeps all of it
    assert Subset(2, seed=4).select(_names()) != val and Subset(None).select(_names()) == _names()
    assert len(Subset(10).select(_names())) == 18  # a class with fewer images keeps them all
    with pytest.raises(UserError, match="--per-class 0"):
        Subset(0)


def _tree(root: Path, classes: int = 2, per: int = 5) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"{c:04d}"
        d.mkdir(parents=True)
        for i in range(per):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / f"im{i}.png")


def test_build_c_builds_only_the_subset(tmp_path: Path) -> None:
    from sda.eval.builders import CorruptedSet, build_corrupted_set

    _tree(tmp_path / "src")
    spec = CorruptedSet(tmp_path / "src", tmp_path / "c", "fog,snow", "5", "cifar", "png", per_class=2, subset_seed=1)
    counts = build_corrupted_set(spec)
    assert counts["images"] == 4
    fog = sorted(p.relative_to(tmp_path / "c" / "fog" / "5").as_posix() for p in (tmp_path / "c/fog/5").rglob("*.png"))
    snow = sorted(p.relative_to(tmp_path / "c/snow/5").as_posix() for p in (tmp_path / "c/snow/5").rglob("*.png"))
    assert fog == snow == sorted(Subset(2, 1).select([f"{c:04d}/im{i}.png" for c in range(2) for i in range(5)]))
    with pytest.raises(UserError, match="other settings"):  # another subset into the same folder: refused
        build_corrupted_set(CorruptedSet(tmp_path / "src", tmp_path / "c", "fog", "5", "cifar", "png", per_class=3))


def test_align_and_eval_take_the_same_subset(tmp_path: Path) -> None:
    from sda.align import AlignConfig, ProjectionConfig, project_folder
    from sda.align.projection import prepare_model
    from sda.diffusion import create_diffusion
    from sda.eval.pairs import Roots, build_subsets
    from sda.testing import tiny_unet

    src = tmp_path / "C" / "fog" / "5"
    _tree(src)
    model, d = prepare_model(tiny_unet()), create_diffusion("4")
    cfg = AlignConfig(
        base_samples=tmp_path / "C", save_dir=tmp_path / "out", datatype="C", image_size=16, corruptions="fog",
        projection=ProjectionConfig(N=2), batch_size=4, per_class=2, subset_seed=7,
    )  # fmt: skip
    summary = project_folder(model, d, cfg)
    assert summary["images"] == 4
    proj = tmp_path / "out" / "ImageNet-C-Syn"
    made = sorted(p.relative_to(proj / "fog/5").as_posix() for p in (proj / "fog/5").rglob("*.png"))
    assert made == sorted(Subset(2, 7).select(f"{c:04d}/im{i}.png" for c in range(2) for i in range(5)))
    pairs = build_subsets("C", Roots(tmp_path / "C", proj), ["fog"], [5], subset=Subset(2, 7))
    assert sorted(pairs[0].rels) == made  # eval scores exactly the projected subset of the full raw folder
    with pytest.raises(UserError, match="--per-class 2 --subset-seed 7"):
        build_subsets("C", Roots(tmp_path / "C", proj), ["fog"], [5], subset=Subset(2, 8))
    with pytest.raises(UserError, match="the whole set"):
        build_subsets("C", Roots(tmp_path / "C", proj), ["fog"], [5])
