"""The command lines of the fault suite (the stage entry points on tiny models)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sda.testing import TINY_ADM, adm_cli_flags

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SDA_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}


def gen_cmd(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "gen" / "sample.py"), "--model", "DiT-d2w64h2/4", "--no-vae", "--image-size", "16",
        "--num-classes", "10", "--ckpt", str(inputs["dit"]), "--num-sampling-steps", "8", "--out-dir", str(out),
        "--device", "cpu", "--images-per-class", "6", "--per-proc-batch-size", "4", "--grid-size", "0", *extra,
    ]  # fmt: skip


def align_cmd(inputs: dict[str, Path], out: Path, norm: str, *extra: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "align" / "project.py"), *adm_cli_flags(TINY_ADM), "--class_cond", "False",
        "--timestep_respacing", "10", "--N", "5", "--batch_size", "4", "--model_path", str(inputs["adm"]),
        "--base_samples", str(inputs["W"]), "--datatype", "W", "--save_dir", str(out), "--device", "cpu",
        "--guidance-norm", norm, *extra,
    ]  # fmt: skip


def build_c_cmd(inputs: dict[str, Path], out: Path) -> list[str]:
    return [
        sys.executable, str(ROOT / "eval" / "build_c.py"), str(inputs["src"]), str(out), "--profile", "cifar",
        "--format", "png", "--severity", "5", "--corruption", "gaussian_noise,glass_blur,motion_blur,snow",
    ]  # fmt: skip
