"""The validation study and the powered test: recipes and their variant configs, the rotated "-C" subset,
the pre-registered verdict rule (fast), and both quick paths end to end (slow; CI runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sda.mini.benchmarks import get_benchmark
from sda.mini.data import rotated_c_subset
from sda.mini.powered import PoweredPlan, verdict
from sda.mini.study import Recipe, Row, TrainSet, glyphs32_plan, read_study
from sda.utils.layout import CORRUPTIONS

ROOT = Path(__file__).resolve().parents[2]
BENCH = get_benchmark("glyphs32")


def test_recipes_name_their_config_and_options() -> None:
    r = Recipe(1.25e-4, 40)
    assert r.name == "lr0.000125-ep40" and r.config(BENCH) == BENCH.finetune_config
    assert r.options() == {"optim_wrapper.optimizer.lr": 1.25e-4, "train_cfg.max_epochs": 40}
    assert Recipe(5e-3, 40, "head").config(BENCH).endswith("finetune_head.py")
    plan = glyphs32_plan(BENCH)
    assert Recipe(1.25e-4, 10) in plan.strength and Recipe(5e-2, 40) in plan.strength  # paper ratio .. old recipe
    assert TrainSet(30).name == "syn-bundled-cfg8-30" and TrainSet(30, None).name == "real30"


@pytest.mark.parametrize("trainable", ["head", "norm"])
def test_variant_configs_freeze_what_they_say(trainable: str) -> None:
    from mmengine.optim import build_optim_wrapper

    from sda.finetune.classifiers import build_classifier, load_config

    cfg = load_config(ROOT / Recipe(5e-3, 40, trainable).config(BENCH))
    model = build_classifier(cfg).train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {id(p): g["lr"] for g in wrapper.optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    moving = {n for n, p in named.items() if p.requires_grad and lr.get(id(p), 0) > 0}
    if trainable == "head":
        assert moving == {"head.fc.weight", "head.fc.bias"}
        assert not any(m.training for m in model.backbone.modules() if "BatchNorm" in type(m).__name__)
    else:
        assert moving and all(".bn" in n or "downsample.1" in n or n.startswith("backbone.bn1") for n in moving)
        assert {n for n in named if "bn" in n and "weight" in n} <= moving


def test_rotated_subset_uses_other_base_images_per_corruption(tmp_path: Path) -> None:
    full = tmp_path / "full"
    for c in CORRUPTIONS:
        for k in range(2):
            d = full / c / "5" / f"{k:04d}"
            d.mkdir(parents=True)
            for i in range(5):
                Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(d / f"im{i}.png")
    out = rotated_c_subset(full, tmp_path / "sub", 2, 5)
    pick = {c: sorted(p.name for p in (out / c / "5" / "0000").iterdir()) for c in CORRUPTIONS}
    assert pick[CORRUPTIONS[0]] == ["im0.png", "im1.png"] and pick[CORRUPTIONS[1]] == ["im2.png", "im3.png"]
    assert pick[CORRUPTIONS[2]] == ["im0.png", "im4.png"]  # (4, 5) mod 5: the rotation wraps
    assert sum(1 for _ in out.rglob("*.png")) == 15 * 2 * 2


def _d(value: float, lo: float, hi: float) -> dict[str, float]:
    return {"value": value, "lo": lo, "hi": hi}


@pytest.mark.parametrize(
    "sda_dda,others_hi,f_passed,status",
    [
        (_d(2.0, 0.5, 3.5), 0.5, True, "reproduced at this scale"),
        (_d(2.0, 0.5, 3.5), 0.5, False, "inconclusive"),  # (f) failed on val
        (_d(2.0, 0.5, 3.5), -0.1, True, "inconclusive"),  # SDA below BN-adapt or w/o MoD
        (_d(0.8, 0.1, 1.5), 0.5, True, "inconclusive"),  # below +1.0
        (_d(-2.0, -4.0, 0.9), 0.5, True, "no effect at this scale"),
        (_d(0.0, -1.0, 1.0), 0.5, True, "inconclusive"),  # the bound must be below +1
    ],
)
def test_the_preregistered_rule(sda_dda: dict, others_hi: float, f_passed: bool, status: str) -> None:
    diffs = {"sda-dda": sda_dda, **{k: _d(0, -1, others_hi) for k in ("sda-bn_adapt", "sda-sda_nomod")}}
    assert verdict(diffs, f_passed)["status"] == status


def test_the_committed_plans_load() -> None:
    for name in ("powered.json", "powered-quick.json"):
        path = BENCH.configs / name
        if path.is_file():
            plan = PoweredPlan.load(path)
            assert plan.seeds and plan.test_per_class > 0 and plan.rule


def test_each_seed_trains_on_its_own_set() -> None:
    """The powered test's seeds draw their own synthetic sets: their set and model names (the folders they are kept
    in) differ, while the study's seed-0 names stay as its recorded rows have them."""
    recipe = Recipe(0.02, 40)
    names = {Row("test", recipe, TrainSet(30, "bundled", 4.0, seed=k)).name for k in range(4)}
    assert len(names) == 4
    assert TrainSet(30, "bundled", 4.0).name == "syn-bundled-cfg4-30" and TrainSet(30, None).name == "real30"


def test_study_rows_carry_their_set_name(tmp_path: Path) -> None:
    """Each row names its training set; a study.json written before rows carried it gets it on reading."""
    real, syn = TrainSet(3, None, seed=2), TrainSet(5, "wide", cfg_scale=4.0)
    rows = {Row("size", Recipe(0.02, 40), t).name: {"train": {**t.__dict__}} for t in (real, syn)}
    rows[Row("size", Recipe(0.05, 40), syn).name] = {"train": {**syn.__dict__}, "set": "kept"}
    (tmp_path / "study.json").write_text(json.dumps({"rows": rows, "sets": {}, "choices": {}}))
    got = [r["set"] for r in read_study(tmp_path / "study.json")["rows"].values()]
    assert got == ["real3-s2", "syn-wide-cfg4-5", "kept"]


@pytest.mark.slow
def test_quick_study_and_powered_test_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "SDA_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}
    base = [
        sys.executable,
        "mini/study.py",
        "--quick",
        "--out",
        str(tmp_path / "study"),
        "--data",
        str(tmp_path / "data"),
    ]
    for extra in ([], ["--test"]):
        r = subprocess.run([*base, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stderr[-3000:]
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert {r["phase"] for r in study["rows"].values()} == {"strength", "size", "generator"}
    for r in study["rows"].values():
        assert r["set"] == TrainSet(**r["train"]).name
        assert r["set"] in study["sets"] or r["train"]["generator"] is None  # gates (a), (g) per synthetic set
    assert set(study["gates"]) >= set("abcdefg") and "train" in study["choices"]
    assert (tmp_path / "study" / "study.png").is_file()
    powered = json.loads((tmp_path / "powered-quick" / "results.json").read_text())
    assert (tmp_path / "powered-quick" / "results.png").is_file()
    assert len(list((tmp_path / "powered-quick" / "ft").glob("*-ep2.pth"))) == 2  # one SDA model per seed
    assert set(powered["study"]["gates"]) >= set("abcdefg") and powered["study"]["rows"] == study["rows"]
    assert powered["seeds"] == [0, 1] and "sda-dda" in powered["differences"]
    assert powered["verdict"]["status"] in ("reproduced at this scale", "no effect at this scale", "inconclusive")
    for v in powered["columns"].values():
        assert v["lo"] <= v["value"] <= v["hi"]
