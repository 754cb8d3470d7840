"""``gen/sample.py --plan``: the counts before the run agree with what the run makes, and a missing checkpoint is one
line (tiny pixel DiT, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sda.gen import GenConfig, generate
from sda.gen.plan import gen_plan
from sda.models.dit import build_dit
from sda.utils.errors import UserError

MODEL = "DiT-d2w64h2/4"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-dit.pt"
    torch.save(build_dit(MODEL, input_size=16, in_channels=3, num_classes=10).state_dict(), path)
    return path


def config(ckpt: Path, out: Path, **kw) -> GenConfig:
    argv = ["--model", MODEL, "--no-vae", "--image-size", "16", "--num-classes", "10", "--ckpt", str(ckpt),
            "--num-sampling-steps", "3", "--out-dir", str(out), "--device", "cpu", "--classes", "0-2",
            "--images-per-class", "2", "--per-proc-batch-size", "4"]  # fmt: skip
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return GenConfig.from_argv(argv)


def test_the_plan_counts_what_the_run_makes_and_what_is_left(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    plan = gen_plan(config(ckpt, out))
    assert plan["output"] == str(out) and (plan["images"], plan["done"], plan["todo"]) == (6, 0, 6)
    assert plan["forwards"] == 6 * 3 and plan["vae_decodes"] == 0  # cfg 1: one forward per step
    assert not out.exists()  # a plan writes nothing
    generate(config(ckpt, out))
    made = sorted(out.rglob("*.png"))
    assert len(made) == plan["images"]
    made[0].unlink()
    again = gen_plan(config(ckpt, out))
    assert (again["done"], again["todo"], again["forwards"]) == (5, 1, 3)


def test_guidance_doubles_the_forwards(ckpt: Path, tmp_path: Path) -> None:
    assert gen_plan(config(ckpt, tmp_path / "g", cfg_scale=4.0))["forwards"] == 6 * 3 * 2


def test_a_missing_checkpoint_is_named(ckpt: Path, tmp_path: Path) -> None:
    cfg = config(ckpt, tmp_path / "g")
    object.__setattr__(cfg, "ckpt", str(tmp_path / "absent.pt"))  # the config checks it too; the plan on its own
    with pytest.raises(UserError, match="absent.pt not found; fetch it with scripts/download_ckpt.sh"):
        gen_plan(cfg)
