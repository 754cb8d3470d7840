"""The routes to Table 1 (scripts/table1.sh) and the stage scripts' DRY_RUN: every stage prints its command and
plan, the plans count the subset's images, each stage's inputs exist or are made by an earlier stage of the
route, align finds gen's output through gen's manifest, and a missing input stops the run with one line.

The scripts run in a stand-in checkout: the repository's scripts, entry points and configs (links), empty
checkpoint files where scripts/download_ckpt.sh puts the weights, and tiny target sets under data/.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sda.testing import make_layout
from sda.utils.layout import CORRUPTIONS
from sda.utils.weights import PRETRAINED_DIR, downloads

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PY": sys.executable, "PYTHONWARNINGS": "ignore", "NGPU": "1"}
CLASSES, PER_CLASS = ("n01", "n02"), 3  # 15 corruptions x 2 classes x 3 images = 90 ImageNet-C images
GEN_DIR = "data/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0"  # gen's default output


def make_checkout(root: Path, authors: bool = False) -> Path:
    """A checkout with the weights in place and ImageNet-C / ImageNet-W / ImageNet val under data/; ``authors``:
    also the authors' released ImageNet-C-Syn and fine-tuned checkpoints (the quick route's inputs)."""
    for d in ("scripts", "gen", "align", "finetune", "eval", "configs"):
        (root / d).symlink_to(ROOT / d)
    for _, f, _ in downloads():
        (root / PRETRAINED_DIR / f).parent.mkdir(parents=True, exist_ok=True)
        (root / PRETRAINED_DIR / f).write_bytes(b"")  # existence is what a plan checks
    make_layout(root / "data/ImageNet-C", "C", CORRUPTIONS, per_class=PER_CLASS, classes=CLASSES)
    make_layout(root / "data/ImageNet-W", "W", per_class=PER_CLASS, classes=CLASSES)
    if authors:
        make_layout(root / "data/ImageNet-C-Syn", "C", CORRUPTIONS, per_class=PER_CLASS, classes=CLASSES)
        for m in ("ResNet50", "SwinT"):
            (root / "finetuned_ckpt").mkdir(exist_ok=True)
            (root / "finetuned_ckpt" / f"{m}.pth").write_bytes(b"")
    return root


def bash(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *args], cwd=root, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=600
    )


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_symlink()}


def commands(out: str, entry: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if f" {entry} " in line and not line.startswith(" ")]


def flag(cmd: list[str], name: str) -> str:
    return cmd[len(cmd) - 1 - cmd[::-1].index(name) + 1]


def plan_value(out: str, stage: str, field: str) -> list[str]:
    """The ``field`` lines of every ``stage`` plan in the output."""
    found, inside = [], False
    for line in out.splitlines():
        if line.startswith(f"{stage} plan"):
            inside = True
        elif not line.startswith("  "):
            inside = False
        elif inside and line.strip().startswith(f"{field}:"):
            found.append(line.split(":", 1)[1].strip())
    return found


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return make_checkout(tmp_path_factory.mktemp("checkout"))


def test_the_subset_route_plans_every_stage_on_the_subset(checkout: Path) -> None:
    before = files(checkout)
    r = bash(checkout, "scripts/table1.sh", "subset", "ResNet50", env={"DRY_RUN": "1", "PER_CLASS": "2"})
    assert r.returncode == 0, r.stderr
    assert files(checkout) == before  # a dry run writes nothing
    out = r.stdout
    (gen,) = commands(out, "gen/sample.py")
    assert plan_value(out, "gen", "output") == [GEN_DIR]
    d, c = commands(out, "align/project.py")
    assert flag(d, "--base_samples") == GEN_DIR and flag(d, "--datatype") == "D"  # align reads what gen writes
    assert flag(c, "--per-class") == "2" and flag(c, "--subset-seed") == "0" and flag(c, "--corruption") == "all"
    assert "--D" not in c and "--scale" not in c and "--attention_resolutions" not in c  # defaults: stated once
    subset_images = len(CORRUPTIONS) * len(CLASSES) * 2
    assert plan_value(out, "align", "images")[1].startswith(f"{subset_images} in 15 set(s), 2 per class (seed 0)")
    assert plan_value(out, "align", "images")[0] == "50,000 to be made by an earlier stage of this run"
    assert plan_value(out, "align", "total")[1].startswith(f"{subset_images * 50:,} UNet forwards and as many")
    (ft,) = commands(out, "finetune/train.py")
    assert Path(flag(ft, "--data-root")) == Path(flag(d, "--save_dir")) / "DiT-Syn"
    assert plan_value(out, "finetune", "images") == ["50,000 in data/DiT-Syn (made by an earlier stage of this run)"]
    (ev,) = commands(out, "eval/evaluate.py")
    assert flag(ev, "--per-class") == "2" and Path(flag(ev, "--data_prefix2")) == Path("data/ImageNet-C-Syn")
    assert flag(ev, "--corruption") == flag(c, "--corruption") and flag(ev, "--severity") == flag(c, "--severity")
    assert plan_value(out, "eval", "images")[0].startswith(f"{subset_images} in 15 set(s), 2 per class")
    assert "eval/report.py --results results/eval" in out


def test_without_per_class_every_image_is_planned(checkout: Path) -> None:
    r = bash(checkout, "scripts/align.sh", "C", env={"DRY_RUN": "1"})
    assert r.returncode == 0, r.stderr
    full = len(CORRUPTIONS) * len(CLASSES) * PER_CLASS
    assert plan_value(r.stdout, "align", "images") == [f"{full} in 15 set(s); 0 already projected; {full} to project"]
    assert "--per-class" not in r.stdout
    r = bash(checkout, "scripts/table1.sh", "full", env={"DRY_RUN": "1", "PER_CLASS": "5"})
    assert r.returncode == 2 and "route full uses every image" in r.stderr


def test_the_quick_route_is_eval_only_on_the_authors_files(tmp_path: Path) -> None:
    root = make_checkout(tmp_path, authors=True)
    r = bash(root, "scripts/table1.sh", "quick", "ResNet50", "SwinT", env={"DRY_RUN": "1"})
    assert r.returncode == 0, r.stderr
    assert not commands(r.stdout, "gen/sample.py") and not commands(r.stdout, "align/project.py")
    assert [flag(c, "--out") for c in commands(r.stdout, "eval/evaluate.py")] == [
        "results/eval/ResNet50_C.json",
        "results/eval/SwinT_C.json",
    ]
    assert plan_value(r.stdout, "eval", "images")[0].endswith("projections (data/ImageNet-C-Syn): present")


def test_a_missing_input_stops_the_route_naming_it(checkout: Path, tmp_path: Path) -> None:
    r = bash(checkout, "scripts/table1.sh", "quick", "ResNet50", env={"DRY_RUN": "1"})
    assert r.returncode == 2 and "finetuned_ckpt/ResNet50.pth not found" in r.stderr  # no authors' files here
    bare = tmp_path / "bare"
    bare.mkdir()
    for d in ("scripts", "gen", "align", "finetune", "eval", "configs"):
        (bare / d).symlink_to(ROOT / d)
    r = bash(bare, "scripts/table1.sh", "subset", env={"DRY_RUN": "1"})
    assert r.returncode == 2 and "pretrained_ckpt/DiT-XL-2-256x256.pt not found" in r.stderr
    assert "download_ckpt.sh" in r.stderr and files(bare) == set()
    r = bash(checkout, "scripts/align.sh", "C", env={"DRY_RUN": "1", "DATA": "elsewhere"})
    assert r.returncode == 2 and "elsewhere/ImageNet-C not found" in r.stderr
    for bad, fragment in (({"PER_CLASS": "0"}, "PER_CLASS=0"), ({"SUBSET_SEED": "x"}, "SUBSET_SEED=x")):
        r = bash(checkout, "scripts/eval.sh", env={"DRY_RUN": "1", **bad})
        assert r.returncode == 2 and fragment in r.stderr


def test_dry_run_0_runs_and_dry_run_commands_only_prints(checkout: Path) -> None:
    r = bash(checkout, "scripts/eval.sh", "ResNet50", env={"DRY_RUN": "commands"})
    assert r.returncode == 0 and "eval plan" not in r.stdout and commands(r.stdout, "eval/evaluate.py")
    r = bash(checkout, "scripts/eval.sh", "ResNet50", env={"DRY_RUN": "0"})  # not a dry run: eval really starts
    assert r.returncode == 2 and "error:" in r.stderr and "eval/evaluate.py" not in r.stdout


def _gen_manifest(folder: Path, status: str) -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"stage": "gen", "status": status}))


def test_align_finds_gen_output_through_its_manifest(tmp_path: Path) -> None:
    root = make_checkout(tmp_path)
    r = bash(root, "scripts/align.sh", "D", env={"DRY_RUN": "1"})
    assert r.returncode == 2 and "no gen output under data" in r.stderr and "scripts/gen.sh" in r.stderr
    _gen_manifest(root / "data/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0-steps-100", "running")
    r = bash(root, "scripts/align.sh", "D", env={"DRY_RUN": "1"})
    assert r.returncode == 2 and "is unfinished" in r.stderr
    made = root / "data/DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0-bf16"
    _gen_manifest(made, "complete")
    make_layout(made, "D", per_class=2, classes=("0000", "0001"), ext=".png")
    r = bash(root, "scripts/align.sh", "D", env={"DRY_RUN": "1"})
    assert r.returncode == 0, r.stderr
    (d,) = commands(r.stdout, "align/project.py")
    assert flag(d, "--base_samples") == "data/" + made.name  # found by its manifest, whatever its name
    assert plan_value(r.stdout, "align", "images")[0].startswith("4 in 1 set(s); 0 already projected")
    _gen_manifest(root / "data/other-run", "complete")
    r = bash(root, "scripts/align.sh", "D", env={"DRY_RUN": "1"})
    assert r.returncode == 2 and "several gen outputs" in r.stderr and "GEN_DIR" in r.stderr


def test_the_scripts_share_one_gpu_count_default() -> None:
    for script in ("gen.sh", "align.sh", "finetune.sh", "eval.sh", "table1.sh"):
        text = (ROOT / "scripts" / script).read_text()
        assert "resolve_ngpu" in text and not re.search(r"^NGPU=\$\{NGPU:-", text, re.M), script
