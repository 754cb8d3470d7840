"""End-to-end Stage 4 evaluation on tiny generated C / W layouts with tiny random classifiers.

The accuracy the tool reports must equal the one computed here independently (own image loading,
own normalization, own ensemble formulas) from the same models; two gloo ranks must give exactly
the single-process numbers on a set whose size is odd.
"""

import csv
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sda.utils.errors import UserError
from sda.utils.stats import wilson

REPO = Path(__file__).resolve().parents[2]
# eval/evaluate.py, the evaluation command (the torchrun test below runs it under the reference's name,
# eval/test_ensemble.py, which must keep working)
_spec = importlib.util.spec_from_file_location("sda_eval_entry", REPO / "eval" / "evaluate.py")
entry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(entry)

CLASSES = ("n001", "n002", "n003")
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
CONFIG = f"""
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, base_channels=4, stem_channels=4, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=32))
data_preprocessor = dict(num_classes=3, mean={MEAN}, std={STD}, to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=32, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=28),
    dict(type='PackInputs'),
]
"""
CORRS = ("gaussian_noise", "fog")


def _image(rng):
    """A random colour plus noise: images whose pooled features differ."""
    a = 0.7 * rng.rand(1, 1, 3) + 0.3 * rng.rand(32, 32, 3)  # (32, 32, 3) in [0, 1]
    return Image.fromarray((a * 255).astype(np.uint8))


def _make_layout(root: Path, subdirs, per_class=(3, 2, 2), seed=0):
    """Raw and projected trees with the same relative paths; 7 images per subset (odd)."""
    rng = np.random.RandomState(seed)
    for sub in subdirs:
        for c, n in zip(CLASSES, per_class, strict=True):
            for i in range(n):
                for tree in ("raw", "proj"):
                    p = root / tree / sub / c / f"{c}_{i}.png"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    _image(rng).save(p)


def _tiny_models(tmp: Path):
    from mmengine.config import Config
    from mmpretrain.models import build_classifier

    cfg_path = tmp / "tiny.py"
    cfg_path.write_text(CONFIG)
    cfg = Config.fromfile(str(cfg_path))
    paths = []
    for k, name in enumerate(("orig.pth", "ft.pth")):
        torch.manual_seed(10 + k)
        m = build_classifier(cfg.model)
        with torch.no_grad():
            m.head.fc.weight.normal_(0, 3.0)  # a sharper head: varied predictions and scores
        torch.save({"state_dict": m.state_dict(), "meta": {}}, tmp / name)
        paths.append(str(tmp / name))
    return str(cfg_path), paths


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("eval")
    _make_layout(tmp / "C", [f"{c}/5" for c in CORRS])
    _make_layout(tmp / "W", ["val"], seed=1)
    cfg, (orig, ft) = _tiny_models(tmp)
    return tmp, cfg, orig, ft


# ----------------------------------------------------------------------------- independent scorer
def _load_models(cfg_path, ckpts):
    from mmengine.config import Config
    from mmpretrain.models import build_classifier

    cfg = Config.fromfile(cfg_path)
    out = []
    for c in ckpts:
        m = build_classifier(cfg.model)
        m.load_state_dict(torch.load(c)["state_dict"])
        out.append(m.eval())
    return out


def _tensor(path):
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[2:30, 2:30]  # center crop 28
    x = torch.from_numpy(a).permute(2, 0, 1)[None]  # (1, 3, 28, 28) RGB
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _expected(root: Path, sub: str, cfg, orig_ckpt, ft_ckpt):
    """{mode: top-1 %} computed with plain torch for first, second, sum, sda, entropy, var_fuse."""
    orig, ft = _load_models(cfg, [orig_ckpt, ft_ckpt])
    p = lambda m, x: m(x, mode="tensor").softmax(1)[0]  # noqa: E731
    H = lambda s: -(s.softmax(0) * s.log_softmax(0)).sum()  # noqa: E731
    hits = {k: [] for k in ("first", "second", "sum", "sda", "entropy", "var_fuse")}
    with torch.no_grad():
        for label, c in enumerate(CLASSES):
            for f in sorted((root / "raw" / sub / c).iterdir()):
                x1, x2 = _tensor(f), _tensor(root / "proj" / sub / c / f.name)
                o1, o2, f2 = p(orig, x1), p(orig, x2), p(ft, x2)
                a, b = o1.var(), o2.var()
                w1 = torch.exp(a) / (torch.exp(a) + torch.exp(b))
                fused = p(orig, w1 * x1 + (1 - w1) * x2)
                preds = {
                    "first": o1,
                    "second": o2,
                    "sum": o1 + o2,
                    "sda": o1 + f2,
                    "entropy": o2 if H(o1) >= H(o2) else o1,
                    "var_fuse": fused,
                }
                for k, s in preds.items():
                    hits[k].append(int(s.argmax()) == label)
    return {k: 100.0 * sum(v) / len(v) for k, v in hits.items()}


def _run(setup, datatype, extra=(), modes="first,second,sum,sda,entropy,var_fuse"):
    tmp, cfg, orig, ft = setup
    root = tmp / datatype
    argv = [
        cfg,
        ft,
        "--originckpt",
        orig,
        "--metrics",
        "accuracy",
        "--datatype",
        datatype,
        "--ensemble",
        modes,
        "--data_prefix1",
        str(root / "raw"),
        "--data_prefix2",
        str(root / "proj"),
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--batch-size",
        "3",
        *extra,
    ]
    if datatype == "C":
        argv += ["--corruption", ",".join(CORRS), "--severity", "5"]
    return entry.main(argv)


# ----------------------------------------------------------------------------- tests
def test_c_accuracy_matches_independent_computation(setup, tmp_path):
    tmp, cfg, orig, ft = setup
    out = tmp_path / "res.json"
    rec = _run(setup, "C", ["--out", str(out)])
    for c in CORRS:
        exp = _expected(tmp / "C", f"{c}/5", cfg, orig, ft)
        got = rec["results"][f"{c}/5"]["top1"]
        assert got == pytest.approx(exp, abs=1e-9), c
        assert rec["results"][f"{c}/5"]["n"] == 7
        assert all(v == 100.0 for v in rec["results"][f"{c}/5"]["top5"].values())  # 3 classes
    # files: JSON, Markdown, CSV
    js = json.loads(out.read_text())
    assert js["modes"] == ["first", "second", "sum", "sda", "entropy", "var_fuse"]
    assert js["methods"]["first"] == "Source" and js["methods"]["sum"] == "DDA" and js["methods"]["sda"] == "SDA"
    assert js["models_per_mode"]["sda"] == "original(raw) + finetuned(projected)"
    assert js["single_model_checkpoint"] == orig
    mean = js["mean"]["5"]["top1"]["sda"]
    assert mean == pytest.approx(np.mean([js["results"][f"{c}/5"]["top1"]["sda"] for c in CORRS]))
    md = out.with_suffix(".md").read_text()
    assert "| corruption | Source | Projected | DDA | SDA | entropy | var_fuse |" in md
    fog = js["results"]["fog/5"]
    lo, hi = wilson(round(fog["top1"]["first"] * fog["n"] / 100), fog["n"])
    assert fog["top1_ci"]["first"] == pytest.approx([lo, hi])  # every cell: its Wilson interval
    assert f"| fog | {fog['top1']['first']:.2f} [{lo:.1f}, {hi:.1f}] |" in md
    iv = js["intervals"]["5"]
    assert f"| mean | {js['mean']['5']['top1']['first']:.2f} [{iv['first']['lo']:.1f}, {iv['first']['hi']:.1f}] |" in md
    for k in ("first", "sda", "sda-sum", "sum-first"):  # the means and the paired differences, bootstrapped
        assert iv[k]["lo"] <= iv[k]["value"] <= iv[k]["hi"], k
    assert iv["sda-sum"]["value"] == pytest.approx(js["mean"]["5"]["top1"]["sda"] - js["mean"]["5"]["top1"]["sum"])
    assert "- SDA - DDA: " in md
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == (len(CORRS) + 1) * 6 + 2  # cells and means of 6 modes, two differences
    r = next(r for r in rows if r["corruption"] == "gaussian_noise" and r["mode"] == "sda")
    assert float(r["top1"]) == pytest.approx(js["results"]["gaussian_noise/5"]["top1"]["sda"], abs=1e-4)
    assert r["severity"] == "5" and r["n"] == "7" and r["method"] == "SDA"


def test_w_layout_and_single_model_choice(setup, tmp_path):
    tmp, cfg, orig, ft = setup
    rec = _run(setup, "W", ["--out", str(tmp_path / "w.json")])
    exp = _expected(tmp / "W", "val", cfg, orig, ft)
    assert rec["results"]["val"]["top1"] == pytest.approx(exp, abs=1e-9)
    assert "| ImageNet-W |" in (tmp_path / "w.md").read_text()
    # --single-model finetuned: the reference's behaviour (positional checkpoint for all but sda)
    rec_ft = _run(setup, "W", ["--single-model", "finetuned"], modes="second")
    exp_ft = _expected(tmp / "W", "val", cfg, ft, ft)
    assert rec_ft["results"]["val"]["top1"]["second"] == pytest.approx(exp_ft["second"])
    assert rec_ft["methods"]["second"] == "second (finetuned)"


def test_pairing_errors_and_allow_missing(setup, tmp_path):
    import shutil

    tmp, cfg, orig, ft = setup
    root = tmp_path / "W"
    shutil.copytree(tmp / "W", root)
    (root / "proj" / "val" / "n002" / "n002_1.png").unlink()
    _image(np.random.RandomState(5)).save(root / "proj" / "val" / "n003" / "extra.png")
    base = [
        cfg,
        ft,
        "--originckpt",
        orig,
        "--datatype",
        "W",
        "--data_prefix1",
        str(root / "raw"),
        "--data_prefix2",
        str(root / "proj"),
        "--device",
        "cpu",
        "--num-workers",
        "0",
    ]
    with pytest.raises(UserError, match=r"n002/n002_1\.png.*n003/extra\.png"):
        entry.main(base)
    rec = entry.main(base + ["--allow-missing", "--ensemble", "sda"])
    assert rec["results"]["val"]["counts"] == {"raw": 7, "projected": 7, "missing": 1, "extra": 1, "paired": 6}
    assert rec["results"]["val"]["n"] == 6


def test_user_errors(setup):
    tmp, cfg, orig, ft = setup
    base = [
        cfg,
        ft,
        "--originckpt",
        orig,
        "--data_prefix1",
        str(tmp / "C" / "raw"),
        "--data_prefix2",
        str(tmp / "C" / "proj"),
        "--device",
        "cpu",
    ]
    with pytest.raises(UserError, match="valid names: all, gaussian_noise"):
        entry.main(base + ["--corruption", "gausian_noise"])
    with pytest.raises(UserError, match="unknown ensemble mode"):
        entry.main(base + ["--ensemble", "median"])
    with pytest.raises(UserError, match="needs --originckpt"):
        entry.main([cfg, ft, "--ensemble", "sda", "--data_prefix1", str(tmp / "C" / "raw")])
    with pytest.raises(UserError, match="3 class folders but the model has 4 classes"):
        entry.main(base + ["--corruption", "fog", "--cfg-options", "model.head.num_classes=4"])


def test_two_gloo_ranks_match_single_process(setup, tmp_path, run_tree):
    tmp, cfg, orig, ft = setup
    tta = ["--tta", "norm,tent", "--tta-batch-size", "3"]  # TENT's streams are dealt to ranks whole
    single = _run(setup, "C", modes="all", extra=tta)
    out = tmp_path / "dist.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "eval" / "test_ensemble.py"),
        cfg,
        ft,
        "--originckpt",
        orig,
        "--datatype",
        "C",
        "--ensemble",
        "all",
        "--corruption",
        ",".join(CORRS),
        "--data_prefix1",
        str(tmp / "C" / "raw"),
        "--data_prefix2",
        str(tmp / "C" / "proj"),
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--batch-size",
        "2",
        "--launcher",
        "pytorch",
        "--out",
        str(out),
        *tta,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", SDA_NO_PROGRESS="1")
    r = run_tree(cmd, env=env, timeout=300)  # ends torchrun's workers too, however the test ends
    assert r.returncode == 0, r.stderr[-3000:]
    dist = json.loads(out.read_text())
    assert dist["world_size"] == 2 and dist["images"] == 14
    for key in single["results"]:
        assert dist["results"][key]["n"] == 7
        assert dist["results"][key]["top1"] == single["results"][key]["top1"]
        assert dist["results"][key]["top5"] == single["results"][key]["top5"]


def test_every_column_in_one_command(setup, tmp_path):
    """Source, DDA, SDA, DiffPure and the adaptation baselines from one eval call: the DiffPure column of an
    unchanged "purification" equals Source; norm, tent and memo are seeded (the same call gives the same table)."""
    import shutil

    tmp, cfg, orig, ft = setup
    pur = tmp_path / "pur"
    shutil.copytree(tmp / "C" / "raw", pur)
    argv = [
        cfg, ft, "--originckpt", orig, "--datatype", "C", "--corruption", ",".join(CORRS),
        "--ensemble", "first,sum,sda,diffpure", "--tta", "norm,tent,memo", "--memo-views", "4",
        "--tta-batch-size", "3", "--data_prefix1", str(tmp / "C" / "raw"), "--data_prefix2", str(tmp / "C" / "proj"),
        "--data_prefix_diffpure", str(pur), "--device", "cpu", "--num-workers", "0", "--out", str(tmp_path / "r.json"),
    ]  # fmt: skip
    rec = entry.main(argv)
    cols = ["first", "sum", "sda", "diffpure", "norm", "tent", "memo"]
    assert list(rec["methods"]) == cols and rec["methods"]["memo"] == "MEMO" and rec["tta"] == ["norm", "tent", "memo"]
    for key in (f"{c}/5" for c in CORRS):
        top1 = rec["results"][key]["top1"]
        assert set(top1) == set(cols) and all(0.0 <= v <= 100.0 for v in top1.values())
        assert top1["diffpure"] == top1["first"]
    table = (tmp_path / "r.md").read_text()
    assert "| corruption | Source | DDA | SDA | DiffPure | Test-time BN | TENT | MEMO |" in table
    assert "TENT: online over each corruption/severity" in table
    assert "memo" in (tmp_path / "r.csv").read_text()
    again = entry.main(argv)
    assert again["results"] == rec["results"]  # seeded streams and augmentations
    one = entry.main([*argv, "--per-class", "1", "--subset-seed", "4"])  # one image per class, in every corruption
    assert all(e["n"] == 3 for e in one["results"].values()) and one["subset"] == {"per_class": 1, "seed": 4}
