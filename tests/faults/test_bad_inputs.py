"""Bad input: one clear line naming the file or flag and the fix, exit code 2, nothing half-written, and the
outputs checked before the work starts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from faults.commands import ROOT, align_cmd, gen_cmd
from PIL import Image

from sda.testing import write_images
from sda.utils.cli import run_main


def _entry(rel: str):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3] + "_bad_inputs", ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch) -> None:
    monkeypatch.setenv("SDA_NO_PROGRESS", "1")  # stderr holds the error line alone


def fails_with(capsys, argv: list[str], fragment: str) -> str:
    """Run an entry point in-process (argv as a subprocess would get it); it must exit 2 with one line."""
    entry = _entry(str(Path(argv[1]).relative_to(ROOT)))
    with pytest.raises(SystemExit) as e:
        run_main(lambda: entry.main(argv[2:]))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert fragment in err, err
    return err


def not_a_folder(tmp_path: Path) -> Path:
    """A path below a regular file: no one can write there (also as root)."""
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "out"


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory):
    """A tiny classifier config and checkpoint, and raw / projected C trees of 2 classes."""
    from sda.finetune.classifiers import build_classifier_from_config

    root = tmp_path_factory.mktemp("eval_bad")
    cfg = root / "cfg.py"
    cfg.write_text(
        "model = dict(type='ImageClassifier', backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=4, "
        "base_channels=4), neck=dict(type='GlobalAveragePooling'), head=dict(type='LinearClsHead', num_classes=2, "
        "in_channels=32))\n"
        "data_preprocessor = dict(num_classes=2, mean=[0, 0, 0], std=[255, 255, 255], to_rgb=True)\n"
        "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(16, 16)), "
        "dict(type='PackInputs')]\n"
    )
    torch.save({"state_dict": build_classifier_from_config(str(cfg)).state_dict()}, root / "m.pth")
    for tree in ("raw", "proj"):
        for c in ("a", "b"):
            write_images(root / tree / "fog" / "5" / c, ["0.png", "1.png"], seed=1)
    return root


def eval_argv(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "eval" / "evaluate.py"), str(root / "cfg.py"), str(root / "m.pth"),
        "--corruption", "fog", "--data_prefix1", str(root / "raw"), "--data_prefix2", str(root / "proj"),
        "--device", "cpu", "--num-workers", "0", *extra,
    ]  # fmt: skip


def test_eval_names_an_unreadable_image(eval_setup, capsys, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(eval_setup, root)
    (root / "raw" / "fog" / "5" / "b" / "1.png").write_bytes(b"")  # zero bytes
    err = fails_with(capsys, eval_argv(root), "cannot read image")
    assert "raw/fog/5/b/1.png" in err and "remove or replace the file" in err


def test_eval_checks_its_output_before_scoring(eval_setup, capsys, tmp_path, monkeypatch):
    import sda.eval.runner as runner

    monkeypatch.setattr(runner, "run_scoring", lambda *a, **k: pytest.fail("scored before checking --out"))
    fails_with(capsys, eval_argv(eval_setup, "--out", str(not_a_folder(tmp_path) / "r.json")), "--out")


def test_eval_refuses_the_same_folder_twice(eval_setup, capsys):
    argv = eval_argv(eval_setup)
    argv[argv.index("--data_prefix2") + 1] = str(eval_setup / "raw")
    fails_with(capsys, argv, "same folder")


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--num-sampling-steps", "0"], "--num-sampling-steps 0"),
        (["--images-per-class", "0"], "--images-per-class"),
        (["--classes", "0-99"], "--classes"),
        (["--precision", "fp8"], "invalid choice"),
    ],
)
def test_gen_bad_flags(fault_inputs, capsys, tmp_path, extra, fragment):
    if extra[0] == "--precision":  # argparse's own error (exit 2 with usage)
        with pytest.raises(SystemExit) as e:
            _entry("gen/sample.py").main(gen_cmd(fault_inputs, tmp_path / "o", *extra)[2:])
        assert e.value.code == 2 and fragment in capsys.readouterr().err
    else:
        fails_with(capsys, gen_cmd(fault_inputs, tmp_path / "o", *extra), fragment)
    assert not (tmp_path / "o").exists()


def test_gen_unwritable_output_is_one_line(fault_inputs, capsys, tmp_path):
    fails_with(capsys, gen_cmd(fault_inputs, not_a_folder(tmp_path)), "cannot write")


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--num_samples", "-1"], "--num_samples -1"),
        (["--num_samples", "0"], "--num_samples 0"),
        (["--batch_size", "0"], "--batch_size 0"),
        (["--D", "3"], "power of two"),
        (["--N", "11"], "--N 11"),
        (["--model_path", "/nonexistent/adm.pt"], "not found"),
        (["--scale", "-6"], "--scale -6.0 must be a finite number >= 0"),
        (["--scale", "nan"], "--scale nan must be a finite number"),
    ],
)
def test_align_bad_flags(fault_inputs, capsys, tmp_path, extra, fragment):
    fails_with(capsys, align_cmd(fault_inputs, tmp_path / "o", "batch", *extra), fragment)
    assert not list((tmp_path / "o").rglob("*.JPEG")) if (tmp_path / "o").exists() else True


def test_align_refuses_outputs_inside_its_inputs(fault_inputs, capsys, tmp_path):
    import shutil

    src = tmp_path / "set"
    shutil.copytree(fault_inputs["src"], src)
    argv = align_cmd(fault_inputs, src, "batch")  # --save_dir = the D input: DiT-Syn would land inside it
    argv[argv.index("--base_samples") + 1] = str(src)
    argv[argv.index("--datatype") + 1] = "D"
    fails_with(capsys, argv, "overlaps --base_samples")
    assert not (src / "DiT-Syn").exists()


def test_builder_refuses_its_own_input_as_output(fault_inputs, capsys):
    src = fault_inputs["src"]
    fails_with(capsys, [sys.executable, str(ROOT / "eval" / "build_c.py"), str(src), str(src / "C")], "overlaps")
    assert not (src / "C").exists()


def test_finetune_batch_size_zero(capsys, tmp_path):
    data = tmp_path / "data"
    for c in range(10):
        write_images(data / f"{c:04d}", ["0.png"], size=(32, 32))
    argv = [sys.executable, str(ROOT / "finetune" / "train.py"), "TinyResNet", "--data-root", str(data),
            "--work-dir", str(tmp_path / "w"), "--final-ckpt", str(tmp_path / "f.pth"),
            "--cfg-options", "train_dataloader.batch_size=0", "load_from=None"]  # fmt: skip
    fails_with(capsys, argv, "train_dataloader.batch_size=0")
    assert not (tmp_path / "w").exists() and not (tmp_path / "f.pth").exists()


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    from sda.utils.io import load_rgb

    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    x = np.asarray(load_rgb(tmp_path / "g16.png"))  # (64, 64, 3) uint8
    assert (x == 255).mean() < 0.01  # PIL's plain convert("RGB") saturates 99.6% of these pixels
    assert np.abs(x[..., 0].astype(float) - ramp / 257.0).max() <= 0.5


def _nan_copy(src: Path, dst: Path) -> Path:
    """The checkpoint ``src`` with every floating-point weight NaN (a broken download or a diverged training)."""
    obj = torch.load(src, weights_only=True)
    sd = obj.get("state_dict", obj)
    for k, v in sd.items():
        if v.is_floating_point():
            sd[k] = torch.full_like(v, float("nan"))
    torch.save(obj, dst)
    return dst


def test_nan_checkpoints_stop_every_stage_naming_the_file(fault_inputs, eval_setup, capsys, tmp_path):
    """gen and align would write black images and eval would report chance accuracy, all with exit code 0."""
    nan = {**fault_inputs, "dit": _nan_copy(fault_inputs["dit"], tmp_path / "nan-dit.pt")}
    nan["adm"] = _nan_copy(fault_inputs["adm"], tmp_path / "nan-adm.pt")
    fails_with(capsys, gen_cmd(nan, tmp_path / "g"), "nan-dit.pt produced non-finite values")
    assert not list((tmp_path / "g").rglob("*.png"))
    fails_with(capsys, align_cmd(nan, tmp_path / "a", "batch"), "nan-adm.pt produced non-finite values")
    assert not list((tmp_path / "a").rglob("*.JPEG"))
    ckpt = _nan_copy(eval_setup / "m.pth", tmp_path / "nan-cls.pth")
    argv = eval_argv(eval_setup)
    argv[3] = str(ckpt)
    fails_with(capsys, argv, "nan-cls.pth produced non-finite values")


def test_eval_removes_its_own_partial_outputs_only(eval_setup, tmp_path):
    """A run killed while writing --out leaves .r.json.sda-*.tmp; the next run removes it, and nothing else."""
    out = tmp_path / "r.json"
    (tmp_path / ".r.json.sda-k1ll.tmp").write_text("{cut off")
    (tmp_path / ".r.md.sda-k1ll.tmp").write_text("| cut")
    (tmp_path / ".r.json.backup.tmp").write_text("the user's")
    entry = _entry("eval/evaluate.py")
    entry.main(eval_argv(eval_setup, "--out", str(out))[2:])
    assert out.is_file() and sorted(p.name for p in tmp_path.glob(".*")) == [".r.json.backup.tmp"]
