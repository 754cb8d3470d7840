"""The mini benchmark's digits splits: stratified, disjoint, deterministic, 32x32 RGB."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sda.mini.digits import IMAGE_SIZE, SPLITS, load_digits_arrays, prepare_digits, stratified_split, upsample_digits
from sda.utils.errors import UserError


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini")
    return out, prepare_digits(out, seed=0)


def test_split_sizes_stratified_and_disjoint():
    _, labels = load_digits_arrays()
    split = stratified_split(labels, seed=0)
    assert {s: len(i) for s, i in split.items()} == {"train": 898, "val": 359, "test": 540}
    all_idx = np.concatenate(list(split.values()))
    assert len(all_idx) == len(np.unique(all_idx)) == len(labels) == 1797
    for c in range(10):
        n = (labels == c).sum()
        counts = [int((labels[split[s]] == c).sum()) for s in SPLITS]
        assert counts[0] == round(0.5 * n) and counts[1] == round(0.2 * n) and sum(counts) == n


def test_split_depends_on_seed():
    _, labels = load_digits_arrays()
    a, b, c = stratified_split(labels, 0), stratified_split(labels, 0), stratified_split(labels, 1)
    assert all(np.array_equal(a[s], b[s]) for s in SPLITS)
    assert not np.array_equal(a["train"], c["train"])
    with pytest.raises(UserError):
        stratified_split(labels, 0, (0.5, 0.5, 0.5))


def test_upsampling_is_cubic_x4_of_the_8x8_grid():
    images, _ = load_digits_arrays()
    rgb = upsample_digits(images[:5])  # (5, 32, 32, 3)
    assert rgb.shape == (5, 32, 32, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all()
    # Box-averaging each 4x4 block gives back the native grid (up to the cubic kernel's blur and rounding).
    blocks = rgb[..., 0].reshape(5, 8, 4, 8, 4).mean(axis=(2, 4)) / 255.0  # (5, 8, 8)
    assert np.abs(blocks - images[:5] / 16.0).mean() < 0.06


def test_prepared_layout_sizes_and_format(prepared):
    out, summary = prepared
    for split, n in {"train": 898, "val": 359, "test": 540}.items():
        files = sorted((out / split).rglob("*.png"))
        assert len(files) == n == summary["sizes"][split]
        assert sorted({f.parent.name for f in files}) == [f"{c:04d}" for c in range(10)]
    names = [{f.name for f in (out / s).rglob("*.png")} for s in SPLITS]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    img = Image.open(next((out / "val").rglob("*.png")))
    assert img.size == (IMAGE_SIZE, IMAGE_SIZE) and img.mode == "RGB"
    # the folder is the label
    _, labels = load_digits_arrays()
    for f in list((out / "test").rglob("*.png"))[:50]:
        assert labels[int(f.stem)] == int(f.parent.name)


def test_same_seed_same_bytes(prepared, tmp_path):
    out, _ = prepared
    prepare_digits(tmp_path, seed=0, splits=("val",))
    assert _digest(tmp_path / "val") == _digest(out / "val")
    assert (tmp_path / "split.json").read_bytes() == (out / "split.json").read_bytes()
