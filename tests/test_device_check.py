"""benchmarks/device_check.py and its wheelhouse: the prepared GPU check runs on a CPU with tiny models (so it
cannot rot between the rare GPU loans), keeps every finished row when it is killed, runs from a checkout that
is not installed, and its plan fits its budget and an 80 GB card."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "benchmarks" / "device_check.py"
ENV = {**os.environ, "SDA_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_device_check_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    r = subprocess.run(
        [sys.executable, str(CHECK), "--smoke", "--out", str(out)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["mode"] == "smoke" and report["complete"] and report["machine"]["torch"]
    assert not [x for x in rows if x.get("error")], [x for x in rows if x.get("error")]
    proj = [x for x in rows if x.get("section") == "projection" and "images_per_s_full_N50" in x]
    assert proj[0]["name"].startswith("baseline") and {"fp16", "bf16"} <= {x["name"].split()[0] for x in proj}
    assert all("max_pixel_dev_vs_fp32" in x and "mean_pixel_dev_vs_fp32" in x for x in proj[1:])
    assert all("x_baseline" in x for x in proj[1:] if x["batch"] == proj[0]["batch"])  # the baseline's batch
    assert len([x for x in rows if x.get("section") == "dit"]) == 3
    assert len([x for x in rows if x.get("section") == "finetune" and x.get("loss_finite")]) == 5
    assert len([x for x in rows if x.get("section") == "eval" and x.get("finite")]) == 5
    torchrun = [x for x in rows if x.get("section") == "torchrun"]
    assert [x["name"].split()[0] for x in torchrun] == ["gen", "align", "eval", "finetune"]
    assert all(x["exactly_once"] and x["rc"] == 0 for x in torchrun), torchrun
    assert "| projection | baseline fp32" in r.stdout
    printed = [json.loads(line[4:]) for line in r.stdout.splitlines() if line.startswith("ROW ")]
    assert printed == rows  # every row was printed as it was written


@pytest.mark.slow
def test_a_killed_check_keeps_the_rows_it_finished(tmp_path: Path) -> None:
    out = tmp_path / "partial.json"
    cmd = [sys.executable, str(CHECK), "--smoke", "--sections", "projection,dit", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            rows = json.loads(out.read_text())["rows"] if out.is_file() else []
            if len(rows) >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = json.loads(out.read_text())  # valid JSON: every write was atomic
    assert not report["complete"] and report["plan"]["rows"][0]["name"].startswith("baseline")
    assert len(report["rows"]) >= 2 and report["rows"][0]["name"].startswith("baseline")
    assert len(report["rows"]) < len(report["plan"]["rows"])  # killed part-way
    printed = [json.loads(line[4:]) for line in stdout.splitlines() if line.startswith("ROW ")]
    assert printed[: len(report["rows"])] == report["rows"]
    assert not list(tmp_path.glob(".partial.json.*"))  # no temporary file left beside it


def test_runs_from_a_checkout_that_is_not_installed(tmp_path: Path) -> None:
    """A copy of the checkout, run from another folder with this environment's install of ``sda`` hidden:
    the check imports the copy's ``sda`` (as on the lent machine, where nothing is installed)."""
    copy = tmp_path / "checkout"
    for part in ("sda", "benchmarks", "configs"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy)
    (tmp_path / "elsewhere").mkdir()
    hide_install = (
        "import runpy, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('sda') is None, 'sda is still importable'\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    out = tmp_path / "elsewhere" / "report.json"
    cmd = [sys.executable, "-c", hide_install, str(copy / "benchmarks" / "device_check.py"), "--smoke"]
    cmd += ["--sections", "dit", "--out", str(out)]
    r = subprocess.run(cmd, cwd=tmp_path / "elsewhere", env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert Path(report["machine"]["sda_path"]) == copy / "sda"
    assert report["complete"] and all("error" not in x for x in report["rows"])


def test_the_plan_fits_its_budget_and_an_80_gb_card() -> None:
    r = subprocess.run([sys.executable, str(CHECK), "--plan"], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["fits_budget"] and plan["estimated_s_without_compile"] <= plan["budget_s"] == 420
    assert plan["memory_gib"] == 80.0 and not plan["over_memory"]
    sections = [x["section"] for x in plan["rows"]]
    assert sections[0] == "projection" and sections.index("compile") == len(sections) - sections.count("compile")
    proj = [x for x in plan["rows"] if x["section"] == "projection"]
    assert all(x["est_peak_gib"] and x["est_peak_gib"] <= 72 for x in proj)
    assert {"fp32 b8", "fp16 b8", "bf16 b8", "baseline fp32 b8"} <= {x["name"] for x in proj}  # rows that compare


def _fake_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    meta = "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n{meta}")
    return path


def test_the_wheelhouse_installs_only_what_is_missing(tmp_path: Path) -> None:
    wheels = _load("device_wheels")
    import importlib.metadata as md

    have = md.version("pytest")
    made = {
        "pytest": _fake_wheel(tmp_path, "pytest", have, []),
        "absent": _fake_wheel(tmp_path, "sda-surely-absent-pkg", "1.0", ["numpy", "colorama; sys_platform == 'win32'"]),
        "old": _fake_wheel(tmp_path, "packaging", "1.0", []),
    }
    reqs = ["pytest", "sda-surely-absent-pkg", f"packaging<{md.version('packaging')}"]
    (tmp_path / "requirements.txt").write_text("\n".join(reqs) + "\n")
    assert sorted(wheels.to_install(tmp_path)) == sorted([made["absent"], made["old"]])  # too new counts as missing
    assert wheels.requires(made["absent"]) == {"numpy"}  # the Windows-only dependency is not needed there
    specs = wheels.pyproject_specs()
    assert specs["setuptools"] == "setuptools<81" and specs["mmengine"].startswith("mmengine==")
