"""The full-scale recipe end to end, as the README writes it: gen.sh -> align.sh -> finetune.sh -> eval.sh.

The scripts run unchanged, from a copy of the repository's scripts, configs and entry points (so their
relative outputs stay in a temporary folder), on tiny random models of the official classes: a DiT with a
diffusers AutoencoderKL of the SD-VAE layout, a guided-diffusion UNet, and MMPreTrain's ResNet-50 with a
2-class head in the official checkpoint's file. Paths come from the scripts' environment variables; the
tiny models' flags are appended to the scripts' own (the last flag wins).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sda.testing import TINY_ADM, adm_cli_flags, make_layout, tiny_dit, tiny_unet, tiny_vae

ROOT = Path(__file__).resolve().parents[1]
ADM = {**TINY_ADM, "image_size": 32, "attention_resolutions": "16"}  # the tiny projector at 32 px


def _repo_copy(dst: Path) -> Path:
    for d in ("scripts", "configs", "gen", "align", "finetune", "eval"):
        shutil.copytree(ROOT / d, dst / d)
    return dst


def _resnet50_checkpoint(path: Path) -> None:
    """A random ResNet-50 of configs/finetune/ResNet50.py with a 2-class head, as an mmcls v0 file."""
    from sda.finetune.classifiers import build_classifier_from_config

    torch.manual_seed(0)
    model = build_classifier_from_config(
        ROOT / "configs/finetune/ResNet50.py", cfg_options={"model.head.num_classes": 2}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {}, "state_dict": model.state_dict()}, path)


def sh(repo: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PY": sys.executable, "NGPU": "1", "OMP_NUM_THREADS": "2", "SDA_NO_PROGRESS": "1", **env}
    r = subprocess.run(["bash", f"scripts/{script}", *args], cwd=repo, env=full, capture_output=True, text=True)
    assert r.returncode == 0, f"{script}: {r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_the_four_scripts_in_sequence(tmp_path: Path) -> None:
    from sda.utils.weights import classifier_file

    repo = _repo_copy(tmp_path / "repo")
    data = repo / "data"
    ckpt = {
        "dit": tiny_dit(
            repo / "pretrained_ckpt" / "dit.pt", "DiT-d2w64h2/2", input_size=4, num_classes=2, in_channels=4
        ),
        "vae": tiny_vae(repo / "pretrained_ckpt" / "sd-vae-ft-ema"),
        "adm": repo / "pretrained_ckpt" / "adm.pt",
    }
    torch.save(tiny_unet(**ADM).state_dict(), ckpt["adm"])
    _resnet50_checkpoint(repo / classifier_file("ResNet50"))
    # 3 target images per class; PER_CLASS=2 keeps a seeded 2 of them through align and eval
    make_layout(data / "ImageNet-C", "C", corruptions=("fog", "snow"), per_class=3, size=(40, 36))
    make_layout(data / "ImageNet-W", "W", per_class=3, size=(40, 36))
    make_layout(data / "ImageNet", "W", per_class=3, size=(40, 36))  # clean val: <root>/val/<wnid>/
    subset = {"PER_CLASS": "2", "SUBSET_SEED": "7"}
    two = ["--cfg-options", "model.head.num_classes=2"]

    # Stage 1: bash scripts/gen.sh (tiny latent DiT + VAE, 2 classes x 4 images)
    sh(
        repo,
        "gen.sh",
        "--model",
        "DiT-d2w64h2/2",
        "--image-size",
        "32",
        "--num-classes",
        "2",
        "--classes",
        "0-1",
        "--images-per-class",
        "4",
        "--num-sampling-steps",
        "2",
        CKPT=str(ckpt["dit"]),
        VAE_PATH=str(ckpt["vae"]),
    )
    gen_dirs = [p for p in data.iterdir() if p.is_dir() and p.name.startswith("DiT-d2w64h2-2-dit-size-32")]
    assert len(gen_dirs) == 1 and json.loads((gen_dirs[0] / "manifest.json").read_text())["total"] == 8

    # Stage 2: bash scripts/align.sh (D, C, W), the tiny UNet's flags after the 256 px ones
    tiny = [*adm_cli_flags(ADM), "--use_fp16", "False", "--timestep_respacing", "4", "--N", "2", "--batch_size", "2"]
    sh(repo, "align.sh", "all", *tiny, CKPT=str(ckpt["adm"]), CORRUPTION="fog,snow", **subset)
    assert len(list((data / "DiT-Syn/0000").glob("*.png"))) == 4  # the synthetic set is never subsampled
    projected = {
        f: sorted(p.name for p in (data / f).iterdir())
        for f in (
            "ImageNet-C-Syn/fog/5/n01",
            "ImageNet-C-Syn/snow/5/n01",
            "ImageNet-C-Syn/fog/5/n02",
            "ImageNet-W-Syn/val/n01",
        )
    }
    assert all(len(names) == 2 for names in projected.values()), projected
    # the same images of a class in every corruption (the subset is drawn per class, not per folder)
    assert projected["ImageNet-C-Syn/fog/5/n01"] == projected["ImageNet-C-Syn/snow/5/n01"]

    # Stage 3: bash scripts/finetune.sh ResNet50 (one short epoch on the aligned synthetic set)
    sh(
        repo,
        "finetune.sh",
        "ResNet50",
        "--cfg-options",
        "model.head.num_classes=2",
        "train_cfg.max_epochs=1",
        "train_dataloader.batch_size=4",
        "train_dataloader.num_workers=0",
    )
    assert (repo / "finetuned_ckpt" / "ResNet50.pth").is_file()

    # Stage 4: bash scripts/eval.sh ResNet50 (ImageNet-C and ImageNet-W tables)
    sh(
        repo,
        "eval.sh",
        "ResNet50",
        *two,
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--batch-size",
        "4",
        CORRUPTION="fog,snow",
        SETS="C,W,clean",
        ORIGIN=str(repo / classifier_file("ResNet50")),
        **subset,
    )
    out = repo / "results" / "eval"
    c = json.loads((out / "ResNet50_C.json").read_text())
    w = json.loads((out / "ResNet50_W.json").read_text())
    clean = json.loads((out / "ResNet50_clean.json").read_text())
    assert set(c["results"]) == {"fog/5", "snow/5"} and c["modes"] == ["first", "second", "sum", "sda"]
    # eval scored exactly the images align projected: 2 per class, no missing projection
    assert c["images"] == 8 and w["images"] == 4 and clean["images"] == 4
    assert all((out / f"ResNet50_{s}.md").is_file() for s in ("C", "W", "clean"))
    table = (out / "table1.md").read_text()
    assert "ResNet-50" in table and "32.5" in table  # the reproduced row beside the published SDA number
