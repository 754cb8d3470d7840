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


def test_download_script_names_every_checkpoint():
    text = (ROOT / "scripts" / "download_ckpt.sh").read_text()
    for name in (
        "DiT-XL-2-256x256.pt",
        "256x256_diffusion_uncond.pt",
        "sd-vae-ft-ema",
        "resnet50_8xb32_in1k_20210831-ea4938fc.pth",
        "swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth",
        "convnext-tiny_3rdparty_32xb128_in1k_20220124-18abde00.pth",
        "swin_base_224_b16x64_300e_imagenet_20210616_190742-93230b0d.pth",
        "convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth",
    ):
        assert name in text, name
