"""Stage 1 entry point: layout, per-image determinism, sharding, resume, errors (tiny pixel DiT, CPU)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sda.gen import GenConfig, generate
from sda.gen import models as gen_models
from sda.gen import sampler as gen_sampler
from sda.gen.config import parse_classes
from sda.models.dit import build_dit
from sda.utils.cli import run_main
from sda.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]
MODEL = "DiT-d2w64h2/4"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A random pixel-space DiT (2 blocks, width 64, patch 4; 16 px, 3 channels, 10 classes), non-trivial outputs."""
    model = build_dit(MODEL, input_size=16, in_channels=3, num_classes=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or name.startswith("final_layer"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-dit.pt"
    torch.save(model.state_dict(), path)
    return path


def flags(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        MODEL,
        "--no-vae",
        "--image-size",
        "16",
        "--num-classes",
        "10",
        "--ckpt",
        str(ckpt),
        "--num-sampling-steps",
        "4",
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--classes",
        "0-4",
        "--images-per-class",
        "3",
        *extra,
    ]


def run(ckpt: Path, out: Path, *extra: str) -> dict:
    return generate(GenConfig.from_argv(flags(ckpt, out, *extra)))


def read_set(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix == ".png"
    }


def test_layout_counts_manifest_and_grid(ckpt, tmp_path):
    out = tmp_path / "set"
    manifest = run(ckpt, out, "--per-proc-batch-size", "4")
    files = read_set(out)
    assert sorted(files) == [f"{c:04d}/{j:06d}.png" for c in range(5) for j in range(3)]
    assert {d.name for d in out.iterdir()} == {"0000", "0001", "0002", "0003", "0004", "manifest.json"}
    assert Image.open(out / "0003" / "000002.png").size == (16, 16)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["status"] == "complete" and on_disk["total"] == 15
    assert on_disk["counts"] == {f"{c:04d}": 3 for c in range(5)} == manifest["counts"]
    assert len(on_disk["settings"]["ckpt_sha256"]) == 64 and on_disk["versions"]["torch"] == torch.__version__
    assert Image.open(tmp_path / "set_grid.png").size == (3 * 16, 5 * 16)  # beside the set, not a class image


def test_folder_name_records_the_settings(ckpt, tmp_path):
    args = GenConfig.from_argv(flags(ckpt, tmp_path)[:-8] + ["--sample-dir", str(tmp_path), "--cfg-scale", "1.5"])
    assert args.output_root() == tmp_path / "DiT-d2w64h2-4-tiny-dit-size-16-vae-none-cfg-1.5-seed-0-steps-4"
    full = GenConfig.from_argv(["--ckpt", "pretrained_ckpt/DiT-XL-2-256x256.pt", "--cfg-scale", "1.0"])
    assert full.folder_name() == "DiT-XL-2-DiT-XL-2-256x256-size-256-vae-ema-cfg-1.0-seed-0"
    assert GenConfig.from_argv([]).folder_name() == full.folder_name()  # the default checkpoint is that file


def test_same_bytes_for_any_batch_size(ckpt, tmp_path):
    # fp64 makes the float path batch-shape independent in practice (BLAS rounding differs in fp32).
    small = ("--classes", "0-1", "--grid-size", "0")
    run(ckpt, tmp_path / "b1", "--per-proc-batch-size", "1", "--precision", "fp64", *small)
    run(ckpt, tmp_path / "b3", "--per-proc-batch-size", "3", "--precision", "fp64", *small)
    a, b = read_set(tmp_path / "b1"), read_set(tmp_path / "b3")
    assert len(a) == 6 and a == b
    # fp32: the same noise, so at most a rare one-level difference from kernel rounding.
    run(ckpt, tmp_path / "f1", "--per-proc-batch-size", "1", *small)
    run(ckpt, tmp_path / "f3", "--per-proc-batch-size", "3", *small)
    for name in a:
        x = np.asarray(Image.open(tmp_path / "f1" / name), dtype=int)
        y = np.asarray(Image.open(tmp_path / "f3" / name), dtype=int)
        assert np.abs(x - y).max() <= 1, name


def test_same_bytes_with_two_processes(ckpt, tmp_path, run_tree):
    run(
        ckpt,
        tmp_path / "one",
        "--per-proc-batch-size",
        "2",
        "--precision",
        "fp64",
        "--grid-size",
        "0",
        "--classes",
        "0-2",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SDA_NO_PROGRESS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "gen" / "sample.py"),
        *flags(
            ckpt,
            tmp_path / "two",
            "--per-proc-batch-size",
            "2",
            "--precision",
            "fp64",
            "--grid-size",
            "0",
            "--classes",
            "0-2",
        ),
    ]
    proc = run_tree(cmd, cwd=REPO, env=env, timeout=300)  # ends torchrun's workers too, however the test ends
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(read_set(tmp_path / "one")) == 9 and read_set(tmp_path / "one") == read_set(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["run"]["world_size"] == 2


def test_resume_after_interruption(ckpt, tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    run(ckpt, reference, "--per-proc-batch-size", "2", "--grid-size", "0")
    out = tmp_path / "resumed"
    real_sample = gen_sampler.Sampler.sample
    calls: list[int] = []

    def interrupted(self, labels, seeds):
        calls.append(len(labels))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the job were killed during the third batch
        return real_sample(self, labels, seeds)

    monkeypatch.setattr(gen_sampler.Sampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, out, "--per-proc-batch-size", "2", "--grid-size", "0")
    assert len(read_set(out)) == 4
    (out / "0002").mkdir(exist_ok=True)
    (out / "0002" / ".000001.png.sda-x1y2.tmp").write_bytes(b"partial")  # a write cut off by a kill -9
    calls.clear()
    monkeypatch.setattr(
        gen_sampler.Sampler,
        "sample",
        lambda self, labels, seeds: (calls.append(len(labels)), real_sample(self, labels, seeds))[1],
    )
    run(ckpt, out, "--per-proc-batch-size", "2", "--grid-size", "0")
    assert sum(calls) == 11  # only the missing images were made
    assert read_set(out) == read_set(reference)
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))
    calls.clear()
    run(ckpt, out, "--per-proc-batch-size", "2", "--grid-size", "0")  # a finished set: nothing to do
    assert calls == []


def test_rerun_with_other_settings_is_refused(ckpt, tmp_path):
    run(ckpt, tmp_path / "s", "--classes", "0", "--images-per-class", "1", "--grid-size", "0")
    with pytest.raises(UserError, match="global_seed"):
        run(ckpt, tmp_path / "s", "--classes", "0", "--images-per-class", "1", "--global-seed", "1")


def test_parse_classes():
    assert parse_classes("0-4", 10) == [0, 1, 2, 3, 4]
    assert parse_classes("3,7,9", 10) == [3, 7, 9]
    assert parse_classes("8-9, 0", 10) == [0, 8, 9]
    assert parse_classes(None, 3) == [0, 1, 2]
    for bad in ("5-2", "0-10", "a"):
        with pytest.raises(UserError, match="--classes"):
            parse_classes(bad, 10)


def test_errors_are_one_line_with_exit_code_2(ckpt, tmp_path, monkeypatch, capsys):
    def main_with(argv):
        monkeypatch.setattr(sys, "argv", ["gen/sample.py", *argv])
        with pytest.raises(SystemExit) as e:
            run_main(lambda: generate(GenConfig.from_argv()))
        assert e.value.code == 2
        return capsys.readouterr().err

    err = main_with(flags(tmp_path / "missing.pt", tmp_path / "o"))
    assert err.startswith("error: checkpoint") and "not found" in err and "download_ckpt.sh" in err
    err = main_with(flags(ckpt, tmp_path / "o")[:1] + ["DiT-d2w64h2/8"] + flags(ckpt, tmp_path / "o")[2:])
    assert "does not match the model" in err and "x_embedder.proj.weight" in err
    err = main_with(
        [
            "--model",
            MODEL,
            "--image-size",
            "128",
            "--num-classes",
            "10",
            "--ckpt",
            str(ckpt),
            "--vae-path",
            str(tmp_path / "no-vae-here"),
            "--out-dir",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ]
    )
    assert "checkpoint" in err  # a latent model needs 4 input channels: the pixel checkpoint is refused first
    with pytest.raises(UserError, match="download_ckpt.sh.*stabilityai/sd-vae-ft-ema"):
        gen_models.load_vae(tmp_path / "no-vae-here")
    with pytest.raises(UserError, match="--cfg-scale"):
        run(ckpt, tmp_path / "o", "--cfg-scale", "0.5")


def test_clip_denoised_defaults_follow_the_space():
    assert GenConfig.from_argv(["--model", "DiT-S/8"]).clip is False  # latent: official DiT
    assert GenConfig.from_argv(["--model", "DiT-S/8", "--no-vae"]).clip is True  # pixel space
    assert GenConfig.from_argv(["--model", "ADM", "--image_size", "32"]).clip is True
    assert GenConfig.from_argv(["--model", "DiT-S/8", "--clip-denoised", "true"]).clip is True


def test_generate_leaves_autograd_enabled(tmp_path):
    # generate() must not switch autograd off for the rest of the process (it broke later tests once)
    torch.manual_seed(0)
    model = build_dit("DiT-S/8", input_size=16, num_classes=2, in_channels=3)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    generate(
        GenConfig.from_argv(
            [
                "--model",
                "DiT-S/8",
                "--no-vae",
                "--image-size",
                "16",
                "--num-classes",
                "2",
                "--ckpt",
                str(tmp_path / "m.pt"),
                "--num-sampling-steps",
                "2",
                "--images-per-class",
                "1",
                "--out-dir",
                str(tmp_path / "out"),
                "--device",
                "cpu",
                "--grid-size",
                "0",
            ]
        )
    )
    assert torch.is_grad_enabled()


def test_adm_model_target_flags(tmp_path):
    from sda.diffusion import ModelMeanType
    from sda.models.adm_flags import create_model, model_kwargs

    adm = {
        "num_channels": 32,
        "num_res_blocks": 1,
        "channel_mult": "1,2",
        "attention_resolutions": "2",
        "num_heads": 2,
        "num_head_channels": -1,
        "learn_sigma": True,
        "class_cond": True,
        "resblock_updown": False,
        "use_scale_shift_norm": True,
    }
    torch.save(create_model(**model_kwargs({**adm, "image_size": 8, "num_classes": 2})).state_dict(), tmp_path / "m.pt")
    base = [
        "--model",
        "ADM",
        "--image-size",
        "8",
        "--num-classes",
        "2",
        "--ckpt",
        str(tmp_path / "m.pt"),
        "--num-sampling-steps",
        "2",
        "--device",
        "cpu",
        *[f"--{k}={v}" for k, v in adm.items()],
    ]
    for extra, mean_type in (
        ([], ModelMeanType.EPSILON),
        (["--predict_v", "True"], ModelMeanType.VELOCITY),
        (["--predict_xstart", "True"], ModelMeanType.START_X),
    ):
        sampler = gen_sampler.build_sampler(GenConfig.from_argv([*base, *extra]), torch.device("cpu"))
        assert sampler.diffusion.model_mean_type == mean_type
    with pytest.raises(UserError, match="exclude each other"):
        gen_sampler.build_sampler(
            GenConfig.from_argv([*base, "--predict_v", "True", "--predict_xstart", "True"]), torch.device("cpu")
        )
