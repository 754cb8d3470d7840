"""Align stage: layouts, preprocessing, formats, exactly-once sharding, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from align_helpers import FAST, make_layout, project_flat, write_images
from PIL import Image

import sda.align.runner as align_runner
from sda.align.layout import discover_jobs, image_sets, load_image
from sda.utils import layout
from sda.utils.errors import UserError
from sda.utils.images import center_crop_arr
from sda.utils.io import list_images


def outputs(root: Path) -> list[str]:
    return list_images(root)


def test_center_crop_matches_the_reference_steps() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8))  # W 500, H 300
    out = center_crop_arr(img, 64)
    # 300 >= 128 -> BOX halve twice (500x300 -> 250x150 -> 125x75), BICUBIC to short side 64, center crop
    step = img.resize((250, 150), Image.BOX).resize((125, 75), Image.BOX)
    step = np.array(step.resize((round(125 * 64 / 75), 64), Image.BICUBIC))
    left = (step.shape[1] - 64) // 2
    assert out.shape == (64, 64, 3) and np.array_equal(out, step[:, left : left + 64])
    small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    assert np.array_equal(center_crop_arr(small, 16), np.array(small))  # already the size: unchanged


def test_load_image_range_and_grayscale(tmp_path: Path) -> None:
    Image.fromarray(np.full((20, 30), 255, dtype=np.uint8), mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and torch.allclose(x, torch.ones_like(x))


def test_layout_c_several_corruptions_and_severities(tmp_path: Path, model, diffusion) -> None:
    rels = make_layout(tmp_path / "in", "C", corruptions=("fog", "snow"), severities=(3, 5))
    summary = project_flat(
        model,
        diffusion,
        base_samples=tmp_path / "in",
        save_dir=tmp_path / "out",
        datatype="C",
        image_size=16,
        corruptions="fog,snow",
        severities="3,5",
        **FAST,
    )
    root = tmp_path / "out" / "ImageNet-C-Syn"
    assert outputs(root) == sorted(rels) and summary["images"] == len(rels) == 16
    manifest = json.loads((root / "fog" / "3" / "align_manifest.json").read_text())
    assert manifest["complete"] and manifest["images"] == 4 and manifest["settings"]["N"] == FAST["N"]
    with Image.open(root / "fog/3/n01/img0.JPEG") as im:
        assert im.format == "JPEG" and im.size == (16, 16)


def test_layout_w_and_d_and_formats(tmp_path: Path, model, diffusion) -> None:
    rels = make_layout(tmp_path / "inW", "W")
    project_flat(
        model, diffusion, base_samples=tmp_path / "inW", save_dir=tmp_path / "out", datatype="W", image_size=16, **FAST
    )
    assert outputs(tmp_path / "out" / "ImageNet-W-Syn") == sorted(rels)

    write_images(tmp_path / "inD" / "0000", ["000000.png", "000001.png"])
    write_images(tmp_path / "inD" / "0001", ["000002.png", "000003.JPEG"])
    project_flat(
        model, diffusion, base_samples=tmp_path / "inD", save_dir=tmp_path / "out", datatype="D", image_size=16, **FAST
    )
    d_root = tmp_path / "out" / "DiT-Syn"
    assert outputs(d_root) == ["0000/000000.png", "0000/000001.png", "0001/000002.png", "0001/000003.JPEG"]
    with Image.open(d_root / "0001/000003.JPEG") as a, Image.open(d_root / "0000/000000.png") as b:
        assert a.format == "JPEG" and b.format == "PNG"

    project_flat(
        model,
        diffusion,
        base_samples=tmp_path / "inD",
        save_dir=tmp_path / "lossless",
        datatype="D",
        image_size=16,
        lossless=True,
        **FAST,
    )
    lossless = tmp_path / "lossless" / "DiT-Syn"
    assert outputs(lossless) == ["0000/000000.png", "0000/000001.png", "0001/000002.png", "0001/000003.png"]
    with Image.open(lossless / "0001/000003.png") as im:
        assert im.format == "PNG"


def test_num_samples_caps_each_set(tmp_path: Path) -> None:
    make_layout(tmp_path / "in", "C", corruptions=("fog", "snow"), per_class=3)
    sets = image_sets(tmp_path / "in", tmp_path / "out", "C", ["fog", "snow"], [5])
    jobs = discover_jobs(sets, num_samples=4)
    assert [j.key for j in jobs][:4] == [
        "fog/5/n01/img0.JPEG",
        "fog/5/n01/img1.JPEG",
        "fog/5/n01/img2.JPEG",
        "fog/5/n02/img0.JPEG",
    ]
    assert len(jobs) == 8


def test_exactly_once_over_three_ranks(tmp_path: Path, model, diffusion, monkeypatch) -> None:
    write_images(tmp_path / "in" / "a", [f"{k}.png" for k in range(6)])
    write_images(tmp_path / "in" / "b", [f"{k}.png" for k in range(4)])
    writes: list[str] = []
    real_save = align_runner.save_image
    monkeypatch.setattr(
        align_runner, "save_image", lambda img, path, **kw: (writes.append(str(path)), real_save(img, path, **kw))
    )
    for rank in range(3):  # simulated ranks without a process group, one after another
        project_flat(
            model,
            diffusion,
            base_samples=tmp_path / "in",
            save_dir=tmp_path / "out",
            datatype="D",
            image_size=16,
            rank=rank,
            world_size=3,
            **FAST,
        )
    assert len(writes) == 10 and len(set(writes)) == 10
    assert len(outputs(tmp_path / "out" / "DiT-Syn")) == 10


def test_resume_after_interruption(tmp_path: Path, model, diffusion, monkeypatch) -> None:
    make_layout(tmp_path / "in", "W", per_class=5)  # 10 images, batches of 4
    real_project = align_runner.project
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C during the third batch
            raise KeyboardInterrupt
        return real_project(*args, **kwargs)

    monkeypatch.setattr(align_runner, "project", interrupted)
    kw = dict(base_samples=tmp_path / "in", save_dir=tmp_path / "out", datatype="W", image_size=16, **FAST)
    with pytest.raises(KeyboardInterrupt):
        project_flat(model, diffusion, **kw)
    root = tmp_path / "out" / "ImageNet-W-Syn"
    done = outputs(root)
    assert len(done) == 8 and not list(root.rglob("*.tmp"))
    before = {p: (root / p).stat().st_mtime_ns for p in done}
    monkeypatch.setattr(align_runner, "project", real_project)
    summary = project_flat(model, diffusion, **kw)
    assert summary["skipped"] == 8 and summary["written"] == 2 and len(outputs(root)) == 10
    assert all((root / p).stat().st_mtime_ns == t for p, t in before.items())
    manifest = json.loads((root / "val" / "align_manifest.json").read_text())
    assert manifest["complete"] and manifest["projected_this_run"] == 2
    with pytest.raises(UserError, match="other settings"):
        project_flat(model, diffusion, **{**kw, "scale": 1.0})


def test_sample_norm_results_do_not_depend_on_ranks(tmp_path: Path, model, diffusion) -> None:
    make_layout(tmp_path / "in", "W", per_class=3)
    kw = dict(base_samples=tmp_path / "in", datatype="W", image_size=16, guidance_norm="sample", lossless=True, **FAST)
    project_flat(model, diffusion, save_dir=tmp_path / "one", **kw)
    for rank in range(2):
        project_flat(model, diffusion, save_dir=tmp_path / "two", rank=rank, world_size=2, **kw)
    for rel in outputs(tmp_path / "one" / "ImageNet-W-Syn"):
        a = np.array(Image.open(tmp_path / "one" / "ImageNet-W-Syn" / rel), dtype=int)
        b = np.array(Image.open(tmp_path / "two" / "ImageNet-W-Syn" / rel), dtype=int)
        assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize(
    "datatype,make,expect",
    [
        ("C", lambda r: make_layout(r, "C", corruptions=("fog",), severities=(3,)), r"<corruption>/<severity>/<wnid>"),
        ("W", lambda r: write_images(r / "n01", ["a.JPEG"]), r"<base_samples>/val/<wnid>"),
        ("D", lambda r: write_images(r, ["a.png"]), r"no images"),
    ],
)
def test_wrong_layout_is_a_clear_error(tmp_path: Path, model, diffusion, datatype, make, expect) -> None:
    make(tmp_path / "in")
    with pytest.raises(UserError, match=expect):
        project_flat(
            model,
            diffusion,
            base_samples=tmp_path / "in",
            save_dir=tmp_path / "out",
            datatype=datatype,
            image_size=16,
            **({"corruptions": "fog", "severities": "5"} if datatype == "C" else {}),  # C only (refused elsewhere)
            **FAST,
        )


def test_bad_settings_are_user_errors(tmp_path: Path, model, diffusion) -> None:
    make_layout(tmp_path / "in", "W")
    kw = dict(base_samples=tmp_path / "in", save_dir=tmp_path / "out", datatype="W")
    with pytest.raises(UserError, match="divisible"):
        project_flat(model, diffusion, image_size=16, **{**FAST, "D": 32}, **kw)
    with pytest.raises(UserError, match="--N"):
        project_flat(model, diffusion, image_size=16, **{**FAST, "N": 50}, **kw)
    with pytest.raises(UserError, match="severity"):
        layout.parse_severities("7")
    assert layout.parse_corruptions("all") == list(layout.CORRUPTIONS)


def test_refuses_to_overwrite_its_inputs(tmp_path: Path, model, diffusion) -> None:
    write_images(tmp_path / "data" / "DiT-Syn" / "0000", ["000000.png"])
    with pytest.raises(UserError, match="replace the inputs"):
        project_flat(
            model,
            diffusion,
            base_samples=tmp_path / "data" / "DiT-Syn",
            save_dir=tmp_path / "data",
            datatype="D",
            image_size=16,
            **FAST,
        )
