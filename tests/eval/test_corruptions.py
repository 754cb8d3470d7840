"""-C and -W builders: layout, counts, sizes, determinism, resumability, the watermark band."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sda.eval import builders as B
from sda.eval import corruptions as C
from sda.utils import layout
from sda.utils.errors import UserError


def _make_set(root: Path, classes=("a", "b"), per_class=2, size=(32, 32), ext=".png", seed=0) -> list[str]:
    rng = np.random.RandomState(seed)
    rels = []
    for c in classes:
        for i in range(per_class):
            p = root / c / f"img{i}{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype(np.uint8)).save(p)
            rels.append(f"{c}/img{i}{ext}")
    return rels


def test_cifar_profile_builds_every_folder(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _make_set(src)
    counts = B.build_corrupted_set(
        B.CorruptedSet(src, out, layout.CORRUPTIONS, (1, 5), profile="cifar", fmt="png", seed=0)
    )
    assert counts == {"images": 4, "written": 4 * 15 * 2, "skipped": 0}
    for name in layout.CORRUPTIONS:
        for sev in (1, 5):
            files = sorted(
                p.relative_to(out / name / str(sev)).as_posix() for p in (out / name / str(sev)).rglob("*.png")
            )
            assert files == ["a/img0.png", "a/img1.png", "b/img0.png", "b/img1.png"], (name, sev)
            im = Image.open(out / name / str(sev) / "a" / "img0.png")
            assert im.size == (32, 32) and im.mode == "RGB"
    assert not list(out.rglob("*.tmp"))
    # resumable: nothing left to do
    again = B.build_corrupted_set(B.CorruptedSet(src, out, layout.CORRUPTIONS, (1, 5), profile="cifar", fmt="png"))
    assert again["written"] == 0 and again["skipped"] == 4 * 15 * 2


def test_corrupt_is_deterministic_and_changes_pixels():
    img = (np.random.RandomState(1).rand(32, 32, 3) * 255).astype(np.uint8)
    for name in layout.CORRUPTIONS:
        a = C.corrupt(img, name, 5, "cifar", seed=7)
        assert a.dtype == np.uint8 and a.shape == img.shape
        assert np.array_equal(a, C.corrupt(img, name, 5, "cifar", seed=7)), name
        assert not np.array_equal(a, img), name


def test_workers_do_not_change_the_result(tmp_path):
    src = tmp_path / "src"
    _make_set(src, per_class=1)
    kw = dict(corruptions=["gaussian_noise", "glass_blur"], severities=[3], profile="cifar", fmt="png", seed=3)
    B.build_corrupted_set(B.CorruptedSet(src, tmp_path / "w1", workers=1, **kw))
    B.build_corrupted_set(B.CorruptedSet(src, tmp_path / "w2", workers=2, **kw))
    for p in (tmp_path / "w1").rglob("*.png"):
        q = tmp_path / "w2" / p.relative_to(tmp_path / "w1")
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q)))


def test_imagenet_profile_resizes_crops_and_writes_jpeg(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _make_set(src, classes=("n01",), per_class=1, size=(60, 40), ext=".JPEG")
    B.build_corrupted_set(B.CorruptedSet(src, out, ["contrast", "elastic_transform"], [5]))  # imagenet profile, jpeg
    for name in ("contrast", "elastic_transform"):
        p = out / name / "5" / "n01" / "img0.JPEG"
        im = Image.open(p)
        assert im.format == "JPEG" and im.size == (224, 224)
    # the contrast of severity 5 (factor 0.05) squeezes the pixel range
    arr = np.asarray(Image.open(out / "contrast" / "5" / "n01" / "img0.JPEG")).astype(float)
    assert arr.std() < 10


def test_unknown_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="valid names: all, gaussian_noise"):
        layout.parse_corruptions(["gaussian_nois"])
    with pytest.raises(UserError, match="profile"):
        C.corrupt(np.zeros((8, 8, 3), np.uint8), "contrast", 1, profile="mnist")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "x.png")
    with pytest.raises(UserError, match="class folder"):
        B.build_corrupted_set(B.CorruptedSet(tmp_path / "flat", tmp_path / "o", ["contrast"], [1], profile="cifar"))


def test_watermark_builder_draws_in_the_text_band(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _make_set(src, classes=("n01", "n02"), per_class=1, size=(300, 260), ext=".JPEG")
    counts = B.build_watermarked_set(B.WatermarkedSet(src, out, fmt="png"))
    assert counts == {"images": 2, "written": 2, "skipped": 0}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["val/n01/img0.png", "val/n02/img0.png"]
    base = np.asarray(C.preprocess(Image.open(src / "n01" / "img0.JPEG").convert("RGB"))).astype(int)
    marked = np.asarray(Image.open(out / "val" / "n01" / "img0.png")).astype(int)
    assert marked.shape == (224, 224, 3)
    changed = np.abs(marked - base).sum(2) > 0  # (224, 224)
    rows = np.where(changed.any(1))[0]
    # AddWatermark writes the text at y = 0.4 * 224 with a 36 px font, from x = 0.01 * 224
    assert changed.sum() > 500
    assert rows.min() >= int(0.4 * 224) and rows.max() < int(0.4 * 224) + 60
    assert not changed[:89].any() and not changed[150:].any()


def test_motion_blur_truncates_to_8_bits_as_imagemagick():
    """ImageMagick's motion blur writes truncated 8-bit levels (measured against Hendrycks' scripts run with
    ImageMagick 6.9.11: flooring matches 99.8% of pixels, rounding moved 49% by one level)."""
    img = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)
    c = C.PROFILES["cifar"]["params"]["motion_blur"][4]
    out = C._motion_blur_corruption(img.astype(np.float64), c, np.random.RandomState(5))
    angle = np.random.RandomState(5).uniform(-45, 45)  # the same draw
    blurred = C._motion_blur(img, radius=c[0], sigma=c[1], angle=angle)  # float levels
    assert np.array_equal(out, np.clip(np.floor(blurred), 0, 255))
    assert (np.round(blurred) != np.floor(blurred)).mean() > 0.2  # rounding would differ: the test can fail
    assert C.to_8bit(np.array([1.6, 2.4, 254.99])).tolist() == [1.0, 2.0, 254.0]


def test_snow_truncates_its_blurred_layer(monkeypatch):
    img = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    floor = C.corrupt(img, "snow", 5, "cifar", seed=11)
    monkeypatch.setattr(C, "to_8bit", np.round)
    assert not np.array_equal(floor, C.corrupt(img, "snow", 5, "cifar", seed=11))  # the layer goes through to_8bit


def test_builders_refuse_an_output_inside_their_input(tmp_path):
    src = tmp_path / "src"
    _make_set(src, per_class=1)
    with pytest.raises(UserError, match="overlaps the source folder"):
        B.build_corrupted_set(B.CorruptedSet(src, src / "C", ["contrast"], [1], profile="cifar"))
    with pytest.raises(UserError, match="overlaps the source folder"):
        B.build_watermarked_set(B.WatermarkedSet(src, src))
    assert not (src / "C").exists()
