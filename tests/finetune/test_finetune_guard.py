"""Fine-tuning as dependable as gen and align (sda.finetune.guard, sda.finetune.resume): a resume equals an
uninterrupted run, a run key refuses another run's work dir, one writer per work dir, this project's partial files
removed and no one else's, typo'd --cfg-options keys refused, a NaN loss stopped (tiny recipe, CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sda.finetune.config import FinetuneConfig
from sda.finetune.runner import latest_checkpoint, resolved_config
from sda.testing import REPO, make_class_folders
from sda.testing import TINY_FINETUNE_OPTS as TINY_OPTS
from sda.testing import finetune_cli as train
from sda.utils.checkpoint import safe_load
from sda.utils.errors import UserError

EPOCHS = ["train_cfg.max_epochs=2", "randomness.seed=5"]  # the recipe keeps the last 2 epoch checkpoints


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return safe_load(path)["state_dict"]


# 2: persistent data-loader workers (mmpretrain's ImageNet recipes; end to end with worker processes: slow)
@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_weights(tmp_path: Path, workers: int) -> None:
    """kill -9 once the first epoch checkpoint exists (during epoch 2, or while saving), then --resume: the final
    weights equal an uninterrupted run's tensor for tensor, and the killed run's partial files are gone."""
    clean, cut = tmp_path / "clean", tmp_path / "cut"
    for d in (clean, cut):
        make_class_folders(d / "data")
    # drop path: the training process's torch stream matters too
    opts = [*TINY_OPTS, *EPOCHS, f"train_dataloader.num_workers={workers}", "+model.backbone.drop_path_rate=0.2"]
    assert train(clean, "--cfg-options", *opts).returncode == 0
    cmd = [sys.executable, str(REPO / "finetune" / "train.py"), "TinyResNet", "--data-root", str(cut / "data"),
           "--work-dir", str(cut / "work"), "--final-ckpt", str(cut / "out" / "Tiny.pth"),
           "--cfg-options", *opts]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=cut, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not (cut / "work" / "epoch_1.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert (cut / "work" / "epoch_1.pth").exists()
    run = train(cut, "--resume", "--cfg-options", *opts)
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = _weights(clean / "out" / "Tiny.pth"), _weights(cut / "out" / "Tiny.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the random streams were restored
    assert "streams restart" not in run.stderr  # no warning: the workers' streams follow the epoch
    assert not [p for p in (cut / "work").rglob("*.tmp")] and not (cut / "work" / ".lock").exists()


def test_resume_finds_the_newest_checkpoint_even_unnamed(tmp_path: Path) -> None:
    """A run killed between writing epoch_N.pth and naming it in last_checkpoint resumes from epoch_N."""
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "last_checkpoint").write_text("")  # killed while naming it
    assert latest_checkpoint(tmp_path) is None
    for name in ("epoch_1.pth", "epoch_2.pth", "epoch_10.pth", "epoch_x.pth", "best_epoch_11.pth"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    assert latest_checkpoint(tmp_path) == str(tmp_path / "epoch_10.pth")
    custom = tmp_path / "other"
    custom.mkdir()
    (custom / "mine.pth").write_bytes(b"")
    (custom / "last_checkpoint").write_text(str(custom / "mine.pth") + "\n")  # another filename_tmpl
    assert latest_checkpoint(custom) == str(custom / "mine.pth")


def test_a_seedless_config_keeps_its_drawn_seed_for_the_resume(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=2)
    assert train(tmp_path, "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1").returncode == 0
    seed = json.loads((tmp_path / "work" / "finetune_run.json").read_text())["seed"]
    assert isinstance(seed, int)
    run = train(tmp_path, "--resume", "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1")
    assert run.returncode == 0 and json.loads((tmp_path / "work" / "finetune_run.json").read_text())["seed"] == seed


def test_another_run_in_the_work_dir_is_refused_naming_what_differs(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=2)
    assert train(tmp_path, "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1").returncode == 0
    opts = [o for o in TINY_OPTS if "lr=" not in o]
    run = train(
        tmp_path, "--resume", "--cfg-options", *opts, "optim_wrapper.optimizer.lr=0.5", "train_cfg.max_epochs=1"
    )
    assert run.returncode == 2 and "optim_wrapper.optimizer.lr: '0.02' -> '0.5'" in run.stderr
    (tmp_path / "data" / "0000" / "extra.png").write_bytes((tmp_path / "data" / "0000" / "000000.png").read_bytes())
    run = train(tmp_path, "--resume", "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1")
    assert run.returncode == 2 and "data.files: 8 -> 9" in run.stderr and "Traceback" not in run.stderr


def test_one_writer_per_work_dir_and_only_own_partials_removed(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=2)
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    lock = {"host": socket.gethostname(), "pid": os.getppid(), "since": "now"}  # a live process: the test runner's
    (work / ".lock").write_text(json.dumps(lock))
    run = train(tmp_path, "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1")
    assert run.returncode == 2 and "is being written by another run" in run.stderr
    (work / ".lock").unlink()
    (work / ".epoch_1.pth.sda-k1ll.tmp").write_bytes(b"a checkpoint cut off by a kill")
    (out / ".Tiny.pth.sda-k1ll.tmp").write_bytes(b"final weights cut off by a kill")
    (work / ".notes.tmp").write_text("the user's")
    run = train(tmp_path, "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in work.glob(".*")) == [".notes.tmp"] and not list(out.glob(".*"))


def _config(*options: str) -> FinetuneConfig:
    return FinetuneConfig.from_argv(["TinyResNet", "--cfg-options", "load_from=None", *options])


def test_cfg_options_keys_must_exist_or_be_marked_new() -> None:
    with pytest.raises(
        UserError, match=r"trian_cfg.max_epochs: the config has no 'trian_cfg' \(did you mean train_cfg"
    ):
        resolved_config(_config("trian_cfg.max_epochs=1"))
    with pytest.raises(UserError, match=r"train_cfg has no 'max_epoch' \(did you mean train_cfg.max_epochs"):
        resolved_config(_config("train_cfg.max_epoch=1"))
    with pytest.raises(UserError, match="has no 'tset_pipeline'.*write \\+tset_pipeline=..."):
        resolved_config(_config("tset_pipeline=1"))
    cfg, _ = resolved_config(_config("+custom.value=3", "train_pipeline.2.padding=4", "log_processor.window_size=1"))
    assert cfg.custom.value == 3 and cfg.train_pipeline[2].padding == 4 and cfg.log_processor.window_size == 1


def test_a_nan_loss_stops_the_run_naming_the_checkpoint(tmp_path: Path) -> None:
    from sda.finetune.classifiers import build_classifier_from_config

    make_class_folders(tmp_path / "data", per_class=2)
    model = build_classifier_from_config(
        REPO / "configs/finetune/TinyResNet.py", cfg_options={"load_from": None, "model.head.num_classes": 4}
    )
    sd = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"meta": {}, "state_dict": sd}, tmp_path / "nan.pth")
    opts = [o for o in TINY_OPTS if not o.startswith("load_from")]
    run = train(tmp_path, "--cfg-options", *opts, f"load_from={tmp_path / 'nan.pth'}", "train_cfg.max_epochs=1")
    assert run.returncode == 2 and "became nan at epoch 1, iteration 1" in run.stderr and "nan.pth" in run.stderr
    assert not (tmp_path / "out" / "Tiny.pth").exists() and "Traceback" not in run.stderr


def test_a_config_that_does_not_parse_is_one_line(tmp_path: Path) -> None:
    from sda.finetune.classifiers import load_config

    bad = tmp_path / "Bad.py"
    bad.write_text("model = dict(type='ImageClassifier'\n")
    with pytest.raises(UserError, match=r"config .*Bad.py does not load \(SyntaxError"):
        load_config(bad)  # what eval and finetune load their configs with
    with pytest.raises(UserError, match="Bad.py does not load"):
        resolved_config(FinetuneConfig.from_argv([str(bad)]))


def test_an_unreadable_training_image_is_named(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=2)
    (tmp_path / "data" / "0001" / "000001.png").write_bytes(b"\x89PNG truncated")
    run = train(tmp_path, "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1")
    assert run.returncode == 2 and "000001.png" in run.stderr and "rerun with --resume" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out" / "Tiny.pth").exists()


def test_a_link_loop_in_the_training_set_is_named(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=2)
    (tmp_path / "data" / "0000" / "loop").symlink_to("..")
    run = train(tmp_path, "--cfg-options", *TINY_OPTS, "train_cfg.max_epochs=1")
    assert run.returncode == 2 and "0000/loop links to its own ancestor" in run.stderr and "Traceback" not in run.stderr
