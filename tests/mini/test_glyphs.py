"""glyphs32: deterministic, stratified, offline, 32x32 RGB; each split independent of the others' sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sda.mini.glyphs import (
    BACKGROUNDS,
    FONTS,
    GlyphStyle,
    check_resources,
    make_split,
    render_glyph,
    render_image,
    split_hash,
    write_glyphs32,
)


def test_write_is_deterministic_stratified_and_in_class_folders(tmp_path):
    sizes = {"train": 20, "val": 10}
    a = write_glyphs32(tmp_path / "a", seed=0, sizes=sizes)
    b = write_glyphs32(tmp_path / "b", seed=0, sizes=sizes)
    assert a["split_sha256"] == b["split_sha256"] and a["sha256"] == b["sha256"]
    assert a["counts"]["train"] == {f"{c:04d}": 2 for c in range(10)}
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 30 and {f.parts[0] for f in files} == {"train", "val"}
    assert {f.parts[1] for f in files} == {f"{c:04d}" for c in range(10)}
    img = Image.open(tmp_path / "a" / files[0])
    assert img.size == (32, 32) and img.mode == "RGB"
    for f in files:  # the PNG bytes decode to the hashed pixels, byte for byte in both folders
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert json.loads((tmp_path / "a" / "split.json").read_text())["sha256"] == a["sha256"]
    c = write_glyphs32(tmp_path / "c", seed=1, sizes=sizes)
    assert c["split_sha256"]["train"] != a["split_sha256"]["train"]


def test_a_split_does_not_depend_on_the_other_splits():
    val_a, labels_a = make_split("val", 20, seed=0)
    val_b, labels_b = make_split("val", 20, seed=0)
    assert np.array_equal(val_a, val_b) and np.array_equal(labels_a, labels_b)
    assert split_hash(val_a, labels_a) != split_hash(*make_split("test", 20, seed=0))
    assert sorted(np.bincount(labels_a)) == [2] * 10


def test_sizes_must_be_stratifiable_and_splits_known(tmp_path):
    with pytest.raises(ValueError, match="multiple of 10"):
        make_split("train", 15, seed=0)
    with pytest.raises(ValueError, match="unknown splits"):
        write_glyphs32(tmp_path, sizes={"holdout": 10})


def test_resources_ship_with_the_installed_packages():
    info = check_resources()  # raises if a font is missing or a background would need the network
    assert set(info["fonts"]) == set(FONTS) and set(info["skimage_data"]) == set(BACKGROUNDS)


def test_glyph_is_drawn_where_asked_and_the_image_holds_the_glyph():
    mask = render_glyph(1, FONTS[0], height=20.0, angle=0.0, dx=0.0, dy=0.0)
    assert mask.shape == (32, 32) and 0.0 <= mask.min() and mask.max() <= 1.0
    rows = np.flatnonzero(mask.max(axis=1) > 0.5)
    assert 16 <= rows[-1] - rows[0] + 1 <= 22  # about the asked height
    style = GlyphStyle(luma_gap=(0.45, 0.45), bg_contrast=(0.0, 0.0))  # a flat background, a strong glyph
    img = render_image(1, np.random.default_rng(0), style).astype(float)
    assert img.shape == (32, 32, 3) and img.std() > 10  # the glyph stands out of a flat background
