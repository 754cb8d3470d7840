"""finetune/train.py end to end on the CPU: the tiny recipe trains, resumes, and refuses bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sda.finetune.classifiers import build_classifier_from_config, classifier_logits
from sda.testing import FINETUNE_NUM_CLASSES as NUM_CLASSES
from sda.testing import TINY_FINETUNE_OPTS as TINY_OPTS
from sda.testing import finetune_cli as train
from sda.testing import make_class_folders
from sda.utils.checkpoint import safe_load
from sda.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def train_records(work: Path) -> list[dict]:
    """The per-iteration training records of every run in a work dir, in run order."""
    runs = sorted(p for p in work.iterdir() if (p / "vis_data" / "scalars.json").is_file())
    lines = [ln for r in runs for ln in (r / "vis_data" / "scalars.json").read_text().splitlines()]
    return [json.loads(ln) for ln in lines if '"loss"' in ln]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ft")
    make_class_folders(tmp_path / "data")
    run = train(tmp_path, "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=2")
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp_path


def test_two_epochs_lower_the_loss_and_write_a_loadable_checkpoint(trained):
    records = train_records(trained / "work")
    first = [r["loss"] for r in records if r["epoch"] == 1]
    second = [r["loss"] for r in records if r["epoch"] == 2]
    assert len(first) == len(second) == 6
    assert np.mean(second) < np.mean(first)
    final = trained / "out" / "Tiny.pth"
    ckpt = safe_load(final)  # weights-only loadable
    assert set(ckpt) == {"meta", "state_dict"} and ckpt["meta"]["epoch"] == 2
    assert ckpt["meta"]["dataset_meta"]["classes"] == [f"{k:04d}" for k in range(NUM_CLASSES)]
    resolved = trained / "out" / "Tiny.py"
    assert "num_classes=4" in resolved.read_text().replace(" ", "")
    model = build_classifier_from_config(resolved, final)  # the resolved config rebuilds the model
    img = np.asarray(Image.open(trained / "data" / "0003" / "000000.png").convert("RGB"))
    logits = classifier_logits(model, torch.from_numpy(img).permute(2, 0, 1)[None])  # (1, 4)
    assert logits.shape == (1, NUM_CLASSES)
    # every epoch's checkpoint is weights-only loadable too (needed by --resume)
    assert "message_hub" in safe_load(trained / "work" / "epoch_2.pth")


def test_resume_continues_from_the_last_epoch(trained):
    run = train(trained, "--resume", "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=3")
    assert run.returncode == 2 and "train_cfg.max_epochs: '2' -> '3'" in run.stderr  # another run: refused
    (trained / "work" / "epoch_2.pth").rename(trained / "work" / "kept.pth")  # as if killed during epoch 2
    (trained / "work" / "last_checkpoint").write_text(str(trained / "work" / "epoch_1.pth"))
    run = train(trained, "--resume", "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=2")
    assert run.returncode == 0, run.stderr[-3000:]
    epochs = [r["epoch"] for r in train_records(trained / "work")]
    assert epochs == [1] * 6 + [2] * 6 + [2] * 6  # the second run trained epoch 2 only
    assert "resumed epoch: 1" in run.stdout + run.stderr
    assert safe_load(trained / "out" / "Tiny.pth")["meta"]["epoch"] == 2


def test_class_count_mismatch_is_a_user_error(tmp_path):
    make_class_folders(tmp_path / "data", n_classes=3, per_class=1)
    run = train(tmp_path, "--cfg-options", "load_from=None")
    assert run.returncode == 2
    assert "3 class folders but the model head has 10 classes" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_pretrained_checkpoint_is_a_user_error(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("finetune_train", ROOT / "finetune" / "train.py")
    train_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_py)
    make_class_folders(tmp_path / "data", n_classes=10, per_class=1)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="missing/classifier.pth not found"):
        train_py.main(["TinyResNet", "--data-root", "data", "--cfg-options", "load_from=missing/classifier.pth"])
