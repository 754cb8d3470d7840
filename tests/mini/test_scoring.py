"""sda.mini.scoring: per-image columns made in process equal eval/evaluate.py's accuracies on the same images
and models (the powered test and the study score with it); the cache is keyed by the checkpoint's content."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sda.mini.scoring import ImageSet, Scores, correct, top1

ROOT = Path(__file__).resolve().parents[2]
CORRS = ("gaussian_noise", "fog")
MODES = ("first", "second", "sum", "sda")


def _eval_entry():
    spec = importlib.util.spec_from_file_location("sda_eval_entry_scoring", ROOT / "eval" / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Raw and projected C trees (3 classes, 3 images each per corruption), a 3-class TinyResNet config and
    two random checkpoints with sharp heads."""
    from sda.finetune.classifiers import build_classifier_from_config

    tmp = tmp_path_factory.mktemp("scoring")
    rng = np.random.default_rng(0)
    for c in CORRS:
        for k in range(3):
            for i in range(3):
                for tree in ("raw", "proj"):
                    a = 0.7 * rng.random((1, 1, 3)) + 0.3 * rng.random((32, 32, 3))  # (32, 32, 3)
                    p = tmp / tree / c / "5" / f"{k:04d}" / f"img{i}.png"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray((a * 255).astype(np.uint8)).save(p)
    cfg = tmp / "tiny3.py"
    cfg.write_text(f'_base_ = ["{ROOT / "configs/finetune/TinyResNet.py"}"]\nmodel = dict(head=dict(num_classes=3))\n')
    ckpts = []
    for k, name in enumerate(("orig.pth", "ft.pth")):
        torch.manual_seed(10 + k)
        m = build_classifier_from_config(str(cfg))
        with torch.no_grad():
            m.head.fc.weight.normal_(0, 3.0)
        torch.save({"state_dict": m.state_dict(), "meta": {}}, tmp / name)
        ckpts.append(tmp / name)
    return tmp, cfg, ckpts


def test_columns_equal_eval_evaluate(layout, tmp_path) -> None:
    tmp, cfg, (orig, ft) = layout
    argv = [str(cfg), str(ft), "--originckpt", str(orig), "--datatype", "C", "--ensemble", ",".join(MODES)]
    argv += ["--data_prefix1", str(tmp / "raw"), "--data_prefix2", str(tmp / "proj"), "--device", "cpu"]
    argv += ["--num-workers", "0", "--corruption", ",".join(CORRS), "--severity", "5"]
    argv += ["--out", str(tmp_path / "eval.json")]
    record = _eval_entry().main(argv)
    raw = ImageSet.folder("raw", tmp / "raw")
    proj = raw.moved("proj", tmp / "proj")
    scores = Scores(tmp_path / "cache", cfg)
    s1, s2, f2 = scores(orig, raw), scores(orig, proj), scores(ft, proj)
    corr = np.array([f.split("/")[0] for f in raw.files])
    for mode in MODES:
        ours = correct(mode, s1, f2 if mode == "sda" else s2, raw.labels)
        for c in CORRS:
            theirs = record["results"][f"{c}/5"]["top1"][mode]
            assert 100 * ours[corr == c].mean() == pytest.approx(theirs, abs=1e-9), (mode, c)
    assert np.array_equal(top1(s1, raw.labels), correct("first", s1, s2, raw.labels))


def test_the_cache_follows_the_checkpoints_content(layout, tmp_path) -> None:
    tmp, cfg, (orig, ft) = layout
    raw = ImageSet.folder("raw", tmp / "raw")
    scores = Scores(tmp_path / "cache", cfg)
    first = scores(orig, raw)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1 and np.array_equal(scores(orig, raw), first)
    moved = tmp_path / "orig.pth"
    moved.write_bytes(ft.read_bytes())  # another model under a new name: a new cache entry, other outputs
    assert not np.array_equal(Scores(tmp_path / "cache", cfg)(moved, raw), first)
    assert raw.labels.tolist() == [k for _ in CORRS for k in (0, 0, 0, 1, 1, 1, 2, 2, 2)]
    assert raw.base_images[0] == "0000/img0.png" and len(set(raw.base_images)) == 9  # shared across corruptions
    feats = scores(orig, raw, "features")
    assert feats.shape == (18, 64)
