"""The install files agree: both conda files install this very package."""

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pip_entries(env_file: str) -> list[str]:
    env = yaml.safe_load((ROOT / env_file).read_text())
    pips = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    return [p for group in pips for p in group]


def test_conda_files_parse_and_install_this_package():
    for f in ("environment.yml", "environment_ft.yml"):
        entries = _pip_entries(f)
        assert "-e ." in entries, f
        env = yaml.safe_load((ROOT / f).read_text())
        assert any(str(d).startswith("python=3.") for d in env["dependencies"])
    assert _pip_entries("environment.yml") == _pip_entries("environment_ft.yml")


def test_pyproject_pins_the_stack():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!\[ ]", d)[0]: d for d in meta["dependencies"]}
    for name in (
        "torch",
        "torchvision",
        "diffusers",
        "timm",
        "mmengine",
        "mmpretrain",
        "mmcv-lite",
        "resize-right",
        "corrupt-tta",
        "imagenet-w",
    ):
        assert name in deps, name
    assert "<81" in deps["setuptools"]
    assert "<2.15" in deps["torch"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci and "bash scripts/test.sh" in readme.split("\n## ")[0]
    for script in sorted((ROOT / "scripts").glob("*.sh")):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_checkpoint_names_come_from_one_table():
    """download_ckpt.sh and eval.sh read sda/utils/weights.py; the configs and defaults name the same files."""
    from sda.gen import GenConfig
    from sda.utils.weights import CLASSIFIERS, PRETRAINED_DIR, classifier_file, downloads

    fetched = {f"{PRETRAINED_DIR}/{dest}" for _, dest, _ in downloads()}
    assert "python3 -m sda.utils.weights downloads" in (ROOT / "scripts" / "download_ckpt.sh").read_text()
    assert "-m sda.utils.weights classifier" in (ROOT / "scripts" / "eval.sh").read_text()
    for model in CLASSIFIERS:
        assert classifier_file(model) in fetched
        config = (ROOT / "configs" / "finetune" / f"{model}.py").read_text()
        assert f'load_from = "{classifier_file(model)}"' in config, model
    assert GenConfig().checkpoint in fetched  # gen.sh's default DiT
    assert f"{GenConfig().vae_folder}/config.json" in fetched
    from sda.align.config import build_parser

    align_default = build_parser().parse_args(["--base_samples", "x", "--datatype", "D"]).model_path
    assert align_default in fetched
    for script, default in (("gen.sh", GenConfig().checkpoint), ("align.sh", align_default)):
        assert default in (ROOT / "scripts" / script).read_text(), script
    out = subprocess.run(
        ["python3", "-m", "sda.utils.weights", "downloads"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert len(out.strip().splitlines()) == len(downloads())
