"""The mini benchmarks: unit pieces (fast) and the shortened end-to-end runs (slow; CI runs both)."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from sda.mini.benchmarks import BENCHMARKS, SOURCE_MODELS, get_benchmark
from sda.mini.data import stratified_subset
from sda.mini.pipeline import run_align, run_eval, run_finetune
from sda.mini.plan import COLUMNS, CONTROL_MODES, EVAL_RUNS, Seed, align_jobs, eval_config, eval_job, eval_runs
from sda.mini.record import PINNED_THREADS, claim_folder, run_key, top1_table
from sda.models.adm_flags import create_model, model_kwargs_from_args
from sda.utils.layout import CORRUPTIONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_adm_flags_build_the_mini_models(name):
    import argparse

    from sda.models.adm_flags import add_model_args

    bench = get_benchmark(name)
    for which in ("uncond", "cond"):
        p = argparse.ArgumentParser()
        add_model_args(p)
        args, _ = p.parse_known_args(bench.adm_flags(which))
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


def test_top1_table_one_severity_with_mean_and_sub_means():
    rec = {"results": {}}
    for i, c in enumerate(CORRUPTIONS):
        for sev, base in ((5, 0.0), (3, 50.0)):
            rec["results"][f"{c}/{sev}"] = {"corruption": c, "severity": sev, "top1": {"sda": base + i}}
    t5 = top1_table(rec, "sda", 5)
    assert t5["gaussian_noise"] == 0.0 and t5["jpeg_compression"] == 14.0 and t5["mean"] == 7.0
    assert t5["low_frequency"] == pytest.approx((7 + 8 + 9 + 10 + 11) / 5)  # snow .. contrast
    assert t5["recoverable"] == pytest.approx((0 + 1 + 2 + 3 + 4 + 5 + 6 + 12 + 13 + 14) / 10)
    assert top1_table(rec, "sda", 3)["mean"] == 57.0
    partial = {"results": {"a/5": {"corruption": "gaussian_noise", "severity": 5, "top1": {"m": 40.0}}}}
    assert top1_table(partial, "m", 5) == {"gaussian_noise": 40.0, "mean": 40.0}  # no sub-mean of a partial family


def _seed(tmp_path, name="glyphs32", **changes):
    bench = get_benchmark(name)
    assets = tmp_path / "assets"
    assets.mkdir(exist_ok=True)
    for n in SOURCE_MODELS:
        if not (assets / n).exists():
            (assets / n).write_bytes(n.encode())
    return Seed(bench, replace(bench.quick, **changes), 0, tmp_path / "seed0", tmp_path / "data", assets)


def test_seed_folder_is_not_resumed_with_other_inputs(tmp_path):
    from sda.utils.errors import UserError

    r = _seed(tmp_path)
    claim_folder(r.out, run_key(r)).release()
    claim_folder(r.out, run_key(r)).release()  # same inputs: resumes
    with pytest.raises(
        UserError, match=r"seed0 holds outputs made with other settings \(settings\.scale: 6\.0 -> 3\.0\)"
    ):
        claim_folder(r.out, run_key(_seed(tmp_path, scale=3.0)))
    (r.assets / "oracle.pth").write_bytes(b"retrained")
    with pytest.raises(UserError, match=r"\(sha256\.oracle\.pth: .*delete it"):
        claim_folder(r.out, run_key(r))
    first = json.loads((r.out / "run_key.json").read_text())
    assert first["sha256"]["oracle.pth"] != run_key(r)["sha256"]["oracle.pth"]  # not overwritten
    assert "sda/mini/configs/glyphs32/adm_uncond.json" in first["sha256"] and first["benchmark"] == "glyphs32"
    with pytest.raises(UserError, match="other settings"):
        claim_folder(r.out, run_key(_seed(tmp_path, name="digits")))  # another benchmark's folder


def _modes(cfg):
    return set(cfg.modes) | set(cfg.tta.methods)


def test_eval_runs_cover_every_column(tmp_path):
    r = _seed(tmp_path)
    runs = eval_runs(r.s)
    assert runs[:2] == ("test_memo_5", "test_memo_3")  # the slow jobs first, one per severity
    for column, (run, mode) in COLUMNS.items():
        for sev in r.s.severities:
            name = eval_job(run, sev)
            assert name in runs, column
            cfg = eval_config(r, name)
            assert mode in _modes(cfg), column
            assert sev in cfg.severities, column
    assert "memo" not in _modes(eval_config(r, "test"))  # MEMO runs once per severity, not again in "test"
    assert _modes(eval_config(r, "test_memo_3")) == {"first", "memo"}
    assert eval_config(r, "test_memo_3").severities == (3,)
    assert eval_config(r, "test").severities == r.s.severities
    no_memo = Seed(r.bench, replace(r.s, tta=("norm",)), r.seed, r.out, r.data, r.assets)
    assert eval_runs(no_memo.s) == EVAL_RUNS and eval_config(no_memo, "test").tta.methods == ("norm",)
    assert eval_config(r, "test_oracle").originckpt.endswith("classifier.pth")
    assert Path(eval_config(r, "test_oracle").checkpoint) == r.assets / "oracle.pth"
    assert Path(eval_config(r, "test_nomod").checkpoint) == r.out / "finetuned_nomod.pth"
    assert eval_config(r, "val").severities == (r.s.severities[0],)
    dp = dict(align_jobs(r))["diffpure_test"]
    assert dp.projection.guidance == "sde" and dp.projection.N == r.s.diffpure_N == 150  # DDA's DiffPure protocol
    assert dp.projection.sde_dt == r.s.diffpure_dt and dp.projection.steps == round(0.15 / r.s.diffpure_dt)
    test = eval_config(r, "test")  # TENT as a stream: several batches per corruption, so its updates reach predictions
    assert test.tta.tta_batch_size == r.s.tta_batch and r.s.test_per_class * 10 > r.s.tta_batch
    argv = eval_config(r, "test").to_argv()  # the subprocess gets these flags: they make the same config back
    from sda.eval.config import EvalConfig

    assert EvalConfig.from_argv(argv) == eval_config(r, "test")


class _Recorder:
    """A stand-in StageRunner: records each pool's jobs and pinned threads instead of running them."""

    def __init__(self):
        self.pools: dict[str, tuple[list[str], int | None]] = {}

    def parallel(self, stage, jobs, threads_per_job=None):
        self.pools[stage] = ([n for n, _ in jobs], threads_per_job)


def test_training_and_adaptation_jobs_run_on_pinned_threads(tmp_path):
    r, run = _seed(tmp_path), _Recorder()
    run_finetune(r, run)
    run_eval(r, run)
    run_align(r, run)
    assert run.pools["finetune"] == (["finetune", "finetune_nomod", "bn_adapt"], PINNED_THREADS)
    assert run.pools["eval"] == ([f"eval_{n}" for n in eval_runs(r.s)], PINNED_THREADS)
    assert run.pools["align"][1] is None  # 8-bit outputs: they may use the spare cores


def _demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "mini" / "demo.py"), *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["glyphs32", "digits"])
def test_quick_demo_end_to_end(tmp_path, name):
    assets = get_benchmark(name).assets
    out, data = tmp_path / "out", tmp_path / "data"
    args = ("--quick", "--benchmark", name, "--out", str(out), "--data", str(data), "--assets", str(assets))
    r = _demo(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    corruptions = {p.name for p in (data / "test1-C").iterdir() if p.is_dir()}
    assert corruptions == set(CORRUPTIONS)
    assert set(res["methods"]) == {*COLUMNS, "best_ensemble"}
    assert set(res["tables"]) == {"5", "3"} and res["tables"]["5"] == res["methods"]
    for table in res["tables"].values():
        for cells in table.values():
            assert set(cells) == corruptions | {"mean", "recoverable", "low_frequency"}
            assert all(0.0 <= v <= 100.0 for v in cells.values())
    assert res["best_ensemble_mode"] in CONTROL_MODES
    assert res["n_per_corruption"] == 10 and res["seconds"] > 0 and res["quick"] is True
    gates = res["gates_per_seed"]["0"]
    assert set("abcde") <= set(gates) and all(isinstance(gates[k]["pass"], bool) for k in "abcde")
    assert res["premise"] == gates["premise"] and res["verdict"]["status"] in (
        "premise absent",
        "not reproduced",
        "reproduced at this scale",
    )
    # every stage wrote its folder, every input was projected exactly once
    seed = out / "seed0"
    assert len(list((seed / "gen").glob("*/*.png"))) == len(list((seed / "DiT-Syn").glob("*/*.png"))) == 30
    for folder in ("test", "diffpure"):
        for sev in (5, 3):
            assert len(list((seed / folder / "ImageNet-C-Syn").glob(f"*/{sev}/*/*.png"))) == 150
    for model in ("finetuned.pth", "finetuned_nomod.pth", "bn_adapt.pth"):
        assert (seed / model).is_file()
    text = (out / "results.md").read_text()
    for piece in ("| **mean** |", "| **recoverable** |", "| **low-frequency** |", "Severity 3", "SDA w/o MoD",
                  "DiffPure", "TENT", "MEMO", "Oracle", "(e) low-pass classifier", "verdict:"):  # fmt: skip
        assert piece in text, piece
    for fig in ("results.png", "grid_synthetic.png", "grid_target.png"):
        assert Image.open(out / fig).size[0] > 100
    assert "(c) clean val" in r.stdout and "verdict:" in r.stdout
    # a rerun resumes: every stage is skipped and the record keeps the first run's times
    r2 = _demo(*args)
    assert r2.returncode == 0, r2.stderr[-3000:]
    again = json.loads((seed / "results.json").read_text())
    first = json.loads((out / "results.json").read_text())
    assert set(again["resumed_stages"]) == {"data", "gen", "align", "finetune", "eval", "gates"}
    assert again["stage_seconds"] == res["stage_seconds"] and again["methods"] == res["methods"]
    assert first["seconds"] == res["seconds"] and again["this_run_seconds"] < res["seconds"]
    assert again["settings"]["finetune_epochs"] == get_benchmark(name).quick.finetune_epochs
    if name != "glyphs32":
        return
    # the README's command for the tiny recipe, on the demo's aligned synthetic set
    ft = subprocess.run(
        ["bash", "scripts/finetune.sh", "TinyResNet", "--work-dir", str(tmp_path / "work"), "--final-ckpt",
         str(tmp_path / "tiny.pth"), "--cfg-options", "train_cfg.max_epochs=1",
         f"load_from={assets / 'classifier.pth'}"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "DATA": str(seed), "PY": sys.executable},
    )  # fmt: skip
    assert ft.returncode == 0, ft.stderr[-3000:]
    assert (tmp_path / "tiny.pth").is_file()
