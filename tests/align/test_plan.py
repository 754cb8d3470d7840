"""align/project.py --plan: the images (the subset's, minus those already projected), the model steps and passes,
and the time from a speed measured by benchmarks/bench_align.py on this machine, never from another figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from sda.align import AlignConfig
from sda.align.plan import align_plan, projector_params
from sda.testing import adm_cli_flags, make_layout
from sda.utils import throughput
from sda.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("SDA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _cfg(tmp_path: Path, *extra: str) -> AlignConfig:
    make_layout(tmp_path / "C", "C", ("fog", "snow"), per_class=4, classes=("n01", "n02", "n03"))  # 24 images
    (tmp_path / "adm.pt").write_bytes(b"")
    return AlignConfig.from_argv(
        [*adm_cli_flags(), "--base_samples", str(tmp_path / "C"), "--datatype", "C", "--corruption", "fog,snow",
         "--save_dir", str(tmp_path / "out"), "--per-class", "2", "--N", "5", "--timestep_respacing", "10",
         "--model_path", str(tmp_path / "adm.pt"), "--device", "cpu", *extra]
    )  # fmt: skip


def test_the_plan_counts_the_subset_and_says_how_to_measure(tmp_path: Path, cache: Path, capsys) -> None:
    cfg = _cfg(tmp_path)
    plan = align_plan(cfg, processes=2)
    assert (plan["images"], plan["done"], plan["todo"]) == (12, 0, 12)  # 2 sets x 3 classes x 2
    assert (plan["steps_per_image"], plan["forwards"], plan["backwards"]) == (5, 60, 60)
    assert plan["seconds"] is None and "benchmarks/bench_align.py" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()  # a plan writes nothing


def test_the_time_is_the_measured_speed_times_the_work(tmp_path: Path, cache: Path) -> None:
    cfg = _cfg(tmp_path)
    kind = throughput.StepKind(throughput.device_name("cpu"), 16, projector_params(cfg.model_flags), "fp32", True)
    throughput.record(kind, 0.5, batch_size=10)
    done = tmp_path / "out/ImageNet-C-Syn" / sorted(_subset_keys(cfg))[0]
    done.parent.mkdir(parents=True)
    done.write_bytes(b"x")  # one image of the subset already projected: a rerun resumes
    plan = align_plan(cfg, processes=2)
    assert (plan["done"], plan["todo"]) == (1, 11)
    assert plan["seconds"] == pytest.approx(11 * 5 * 0.5 / 2) and not plan["upper_bound"]
    sde = align_plan(_cfg(tmp_path / "sde", "--guidance", "sde", "--N", "100", "--sde-dt", "0.005"), processes=1)
    assert sde["steps_per_image"] == 20 and sde["backwards"] == 0  # t* 0.1 by steps of 0.005: forwards only
    assert sde["upper_bound"] and sde["seconds"] == pytest.approx(12 * 20 * 0.5)  # a guided step costs more


def _subset_keys(cfg: AlignConfig) -> set[str]:
    from sda.align.layout import discover_jobs, image_sets

    sets = image_sets(cfg.base_samples, cfg.save_dir, cfg.datatype, cfg.corruptions, cfg.severities)
    return {j.key for j in discover_jobs(sets, subset=cfg.subset)}


def test_an_unguided_plan_uses_a_guided_measurement_as_an_upper_bound(tmp_path: Path, cache: Path) -> None:
    cfg = _cfg(tmp_path, "--guidance", "none", "--N", "4")
    kind = throughput.StepKind(throughput.device_name("cpu"), 16, projector_params(cfg.model_flags), "fp32", True)
    throughput.record(kind, 0.2, batch_size=4)
    plan = align_plan(cfg, processes=1)
    assert plan["upper_bound"] and plan["seconds"] == pytest.approx(12 * 4 * 0.2)


def test_missing_inputs_are_named(tmp_path: Path, cache: Path, monkeypatch) -> None:
    cfg = _cfg(tmp_path)
    (tmp_path / "adm.pt").unlink()
    with pytest.raises(UserError, match="adm.pt not found"):
        align_plan(cfg)
    (tmp_path / "adm.pt").write_bytes(b"")
    gone = AlignConfig.from_argv(
        [*adm_cli_flags(), "--base_samples", str(tmp_path / "gen"), "--datatype", "D", "--model_path",
         str(tmp_path / "adm.pt"), "--save_dir", str(tmp_path / "out")]
    )  # fmt: skip
    with pytest.raises(UserError, match="does not exist"):
        align_plan(gone)
    monkeypatch.setenv("SDA_PLANNED", f"{tmp_path / 'gen'}=40")  # an earlier stage of this run makes it
    plan = align_plan(gone)
    assert plan["made_earlier"] and plan["todo"] == 40 and plan["forwards"] == 40 * 50


def test_bench_align_records_what_the_plan_looks_up(tmp_path: Path, cache: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_align", ROOT / "benchmarks" / "bench_align.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.parse_args(["--preset", "small", "--steps", "2", "--precision", "fp32"])
    _, meta = bench.build_runs(args, torch.device("cpu"))
    bench.record_speed(args, meta, {"baseline fp32": [9.0], "fast fp32 cl": [1.6]}, torch.device("cpu"))
    (tmp_path / "ckpt.pt").write_bytes(b"")
    make_layout(tmp_path / "W", "W", per_class=3)
    flags = [f"--{k}={v}" for k, v in bench.PRESETS["small"].items()]
    cfg = AlignConfig.from_argv([*flags, "--base_samples", str(tmp_path / "W"), "--datatype", "W", "--save_dir",
                                 str(tmp_path / "o"), "--model_path", str(tmp_path / "ckpt.pt"), "--device", "cpu",
                                 "--batch_size", str(meta["B"])])  # fmt: skip
    plan = align_plan(cfg)
    per_step = 1.6 / (meta["B"] * meta["N"])  # the fast row's median over batch x timed steps
    assert plan["measured"]["seconds_per_image_step"] == pytest.approx(per_step)
    assert plan["seconds"] == pytest.approx(6 * 50 * per_step)  # 2 classes x 3 images, N 50
