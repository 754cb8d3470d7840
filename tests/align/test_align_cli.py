"""align/project.py: the reference's flags, the grid, errors as exit code 2, torchrun with 3 ranks."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from align_helpers import TINY_FLAGS, make_layout, write_images
from PIL import Image

from sda.utils.io import list_images

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "align" / "project.py"


def cli_flags(checkpoint: Path, base: Path, out: Path, datatype: str, *extra: str) -> list[str]:
    """The flags as SDA's align.sh writes them, with the tiny model's MODEL_FLAGS."""
    model_flags = []
    for k, v in TINY_FLAGS.items():
        model_flags += [f"--{k}", str(v)]
    return [
        *model_flags,
        "--class_cond",
        "False",
        "--diffusion_steps",
        "1000",
        "--noise_schedule",
        "linear",
        "--use_fp16",
        "True",
        "--batch_size",
        "3",
        "--num_samples",
        "50000",
        "--timestep_respacing",
        "4",
        "--model_path",
        str(checkpoint),
        "--base_samples",
        str(base),
        "--D",
        "4",
        "--N",
        "2",
        "--scale",
        "6",
        "--datatype",
        datatype,
        "--save_dir",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]


def run_in_process(argv: list[str], monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("align_project_entry", ENTRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["project.py", *argv])
    module.run_main(module.main)


def test_cli_reference_flags_c_layout_and_grid(tmp_path: Path, checkpoint: Path, monkeypatch) -> None:
    rels = make_layout(tmp_path / "in", "C", corruptions=("gaussian_noise",), severities=(5,))
    argv = cli_flags(
        checkpoint,
        tmp_path / "in",
        tmp_path / "data",
        "C",
        "--corruption",
        "gaussian_noise",
        "--severity",
        "5",
        "--grid",
        str(tmp_path / "grid.png"),
    )
    run_in_process(argv, monkeypatch)
    assert list_images(tmp_path / "data" / "ImageNet-C-Syn") == sorted(rels)
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.format == "PNG" and grid.size[1] > 4 * 16  # 4 rows: inputs, projections, two low-pass views
    settings = json.loads((tmp_path / "data/ImageNet-C-Syn/gaussian_noise/5/align_manifest.json").read_text())
    assert settings["settings"]["precision"] == "fp32" and settings["settings"]["timestep_respacing"] == "4"


def test_cli_wrong_layout_exits_2(tmp_path: Path, checkpoint: Path, monkeypatch, capsys) -> None:
    write_images(tmp_path / "in" / "gaussian_noise" / "3" / "n01", ["a.JPEG"])
    argv = cli_flags(checkpoint, tmp_path / "in", tmp_path / "data", "C", "--corruption", "gaussian_noise")
    with pytest.raises(SystemExit) as e:
        run_in_process(argv, monkeypatch)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "gaussian_noise/5 not found" in err and "<corruption>/<severity>/<wnid>" in err


def test_torchrun_three_ranks_project_each_image_once(tmp_path: Path, checkpoint: Path, run_tree) -> None:
    write_images(tmp_path / "in" / "0000", [f"{k:06d}.png" for k in range(6)])
    write_images(tmp_path / "in" / "0001", [f"{k:06d}.png" for k in range(6, 10)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SDA_NO_PROGRESS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "3",
        "--master_port",
        str(port),
        str(ENTRY),
        *cli_flags(checkpoint, tmp_path / "in", tmp_path / "data", "D"),
    ]
    res = run_tree(cmd, cwd=REPO, env=env, timeout=300)  # ends torchrun's workers too, however the test ends
    assert res.returncode == 0, res.stderr[-2000:]
    root = tmp_path / "data" / "DiT-Syn"
    assert len(list_images(root)) == 10
    manifest = json.loads((root / "align_manifest.json").read_text())
    assert manifest["complete"] and manifest["projected_this_run"] == 10  # sum over ranks: no repeats
    assert manifest["settings"]["world_size"] == 3


@pytest.mark.parametrize(
    "change,named",
    [
        ("checkpoint", "model_sha256"),  # another file under the same name
        (["--batch_size", "2"], "batch_size"),
        (["--clip_denoised", "False"], "clip_denoised"),
        (["--precision", "bf16"], "precision"),
        (["--lowpass", "resize_right"], "lowpass"),
    ],
)
def test_resume_refuses_any_changed_setting(tmp_path: Path, checkpoint: Path, monkeypatch, capsys, change, named):
    import shutil

    import torch
    from align_helpers import tiny_unet

    ckpt = tmp_path / "adm.pt"
    shutil.copyfile(checkpoint, ckpt)
    make_layout(tmp_path / "in", "W", per_class=2)
    argv = cli_flags(ckpt, tmp_path / "in", tmp_path / "out", "W", "--num_samples", "1")
    run_in_process(argv, monkeypatch)  # a first, partial run (one image per set)
    if change == "checkpoint":
        torch.save(tiny_unet(seed=1).state_dict(), ckpt)
        extra = []
    else:
        extra = change
    with pytest.raises(SystemExit) as e:
        run_in_process(cli_flags(ckpt, tmp_path / "in", tmp_path / "out", "W", *extra), monkeypatch)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "other settings" in err and f"{named}:" in err
    assert len(list_images(tmp_path / "out" / "ImageNet-W-Syn")) == 1  # nothing mixed in
