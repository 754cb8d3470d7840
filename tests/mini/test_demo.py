"""The mini benchmark: unit pieces (fast) and the shortened end-to-end run (slow; CI runs it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sda.mini.data import stratified_subset
from sda.mini.pipeline import CONTROL_MODES, QUICK, adm_flags, claim_folder, run_key, top1_table
from sda.models.adm_flags import create_model, model_kwargs_from_args

ROOT = Path(__file__).resolve().parents[2]


def test_adm_flags_build_the_mini_models():
    import argparse

    from sda.models.adm_flags import add_model_args

    for which in ("uncond", "cond"):
        p = argparse.ArgumentParser()
        add_model_args(p)
        args, _ = p.parse_known_args(adm_flags(which))
        model = create_model(**model_kwargs_from_args(args), num_classes=10)
        assert model.image_size == 32 and (model.num_classes is not None) == (which == "cond")


def test_stratified_subset_takes_first_files_per_class(tmp_path):
    for c in range(3):
        for i in range(5):
            d = tmp_path / "src" / f"{c:04d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4)).save(d / f"{10 - i:06d}.png")
    out = stratified_subset(tmp_path / "src", tmp_path / "sub", 2)
    for c in range(3):
        assert sorted(p.name for p in (out / f"{c:04d}").iterdir()) == ["000006.png", "000007.png"]


def test_top1_table_mean_over_corruptions():
    rec = {
        "results": {
            "a/5": {"corruption": "a", "top1": {"sda": 50.0}},
            "b/5": {"corruption": "b", "top1": {"sda": 70.0}},
        }
    }
    assert top1_table(rec, "sda") == {"a": 50.0, "b": 70.0, "mean": 60.0}


def test_seed_folder_is_not_resumed_with_other_inputs(tmp_path):
    import dataclasses

    from sda.utils.errors import UserError

    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("adm_uncond.pt", "adm_cond.pt", "classifier.pth"):
        (assets / name).write_bytes(name.encode())
    out = tmp_path / "seed0"
    claim_folder(out, run_key(0, QUICK, assets)).release()
    claim_folder(out, run_key(0, QUICK, assets)).release()  # same inputs: resumes
    with pytest.raises(
        UserError, match=r"seed0 holds outputs made with other settings \(settings\.scale: 6\.0 -> 3\.0\)"
    ):
        claim_folder(out, run_key(0, dataclasses.replace(QUICK, scale=3.0), assets))
    (assets / "adm_cond.pt").write_bytes(b"retrained")
    with pytest.raises(UserError, match=r"\(sha256\.adm_cond\.pt: .*delete it"):
        claim_folder(out, run_key(0, QUICK, assets))
    first = json.loads((out / "run_key.json").read_text())
    assert first["sha256"]["adm_cond.pt"] != run_key(0, QUICK, assets)["sha256"]["adm_cond.pt"]  # not overwritten


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    assets = Path(os.environ.get("SDA_MINI_ASSETS", ROOT / "assets" / "mini"))
    out, data = tmp_path / "out", tmp_path / "data"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "mini" / "demo.py"),
            "--quick",
            "--out",
            str(out),
            "--data",
            str(data),
            "--assets",
            str(assets),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    corruptions = {p.name for p in (data / "test1-C").iterdir() if p.is_dir()}
    assert len(corruptions) == 15
    assert set(res["methods"]) == {"source", "projected", "dda", "sda", "best_ensemble", "bn_adapt"}
    for cells in res["methods"].values():
        assert set(cells) == corruptions | {"mean"}
        assert all(0.0 <= v <= 100.0 for v in cells.values())
    assert res["best_ensemble_mode"] in CONTROL_MODES
    assert res["n_per_corruption"] == 10 and 0.0 <= res["synthetic_accuracy"] <= 100.0 and res["seconds"] > 0
    # every stage wrote its folder, every input was projected exactly once
    seed = out / "seed0"
    assert len(list((seed / "gen").glob("*/*.png"))) == len(list((seed / "DiT-Syn").glob("*/*.png"))) == 30
    assert len(list((seed / "test" / "ImageNet-C-Syn").glob("*/5/*/*.png"))) == 150
    assert (seed / "finetuned.pth").is_file() and (seed / "bn_adapt.pth").is_file()
    table = (out / "results.md").read_text()
    assert "| **mean** |" in table and "SDA" in table and "BN-adapt" in table
    for fig in ("results.png", "grid_synthetic.png", "grid_target.png"):
        assert Image.open(out / fig).size[0] > 100
    assert "quality gates" in r.stdout
    # a rerun resumes: every stage is skipped and the record keeps the first run's times
    r2 = subprocess.run(
        [sys.executable, str(ROOT / "mini" / "demo.py"), "--quick", "--out", str(out), "--data", str(data),
         "--assets", str(assets)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r2.returncode == 0, r2.stderr[-3000:]
    again = json.loads((seed / "results.json").read_text())
    first = json.loads((out / "results.json").read_text())
    assert set(again["resumed_stages"]) == {"data", "gen", "align", "finetune", "eval", "gates"}
    assert again["stage_seconds"] == res["stage_seconds"] and again["methods"] == res["methods"]
    assert first["seconds"] == res["seconds"] and again["this_run_seconds"] < res["seconds"]
    assert again["settings"]["finetune_epochs"] == 1
    # the README's command for the tiny recipe, on the demo's aligned synthetic set
    ft = subprocess.run(
        ["bash", "scripts/finetune.sh", "TinyResNet", "--work-dir", str(tmp_path / "work"), "--final-ckpt",
         str(tmp_path / "tiny.pth"), "--cfg-options", "train_cfg.max_epochs=1"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "DATA": str(seed), "PY": sys.executable},
    )  # fmt: skip
    assert ft.returncode == 0, ft.stderr[-3000:]
    assert (tmp_path / "tiny.pth").is_file()
