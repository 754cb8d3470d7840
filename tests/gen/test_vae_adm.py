"""Stage 1 with a local diffusers VAE (latent DiT) and with a class-conditional ADM UNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sda.gen import GenConfig, generate
from sda.gen import models as gen_models
from sda.models.dit import build_dit
from sda.testing import tiny_vae
from sda.utils.errors import UserError


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    """A tiny AutoencoderKL with the SD VAE's interface (4 latent channels, 8x downsampling), saved locally."""
    return tiny_vae(tmp_path_factory.mktemp("vae") / "sd-vae-ft-ema")


def test_local_vae_decodes_latents_of_the_right_shape(vae_dir):
    vae = gen_models.load_vae(vae_dir)
    with torch.no_grad():
        x = vae.decode(torch.randn(2, 4, 4, 4) / gen_models.VAE_SCALE).sample
    assert x.shape == (2, 3, 32, 32)
    with pytest.raises(UserError, match="not found.*download_ckpt.sh"):
        gen_models.load_vae(vae_dir.parent / "missing")


def test_latent_dit_through_vae_path(vae_dir, tmp_path):
    model = build_dit("DiT-d2w64h2/2", input_size=4, num_classes=10)  # 32 px images = 4x4 latents
    torch.save(model.state_dict(), tmp_path / "latent.pt")
    out = tmp_path / "set"
    generate(
        GenConfig.from_argv(
            [
                "--model",
                "DiT-d2w64h2/2",
                "--image-size",
                "32",
                "--num-classes",
                "10",
                "--ckpt",
                str(tmp_path / "latent.pt"),
                "--vae-path",
                str(vae_dir),
                "--num-sampling-steps",
                "2",
                "--classes",
                "1,3",
                "--images-per-class",
                "2",
                "--out-dir",
                str(out),
                "--device",
                "cpu",
                "--cfg-scale",
                "1.5",
            ]
        )
    )
    assert Image.open(out / "0003" / "000001.png").size == (32, 32)
    assert len(list(out.rglob("*.png"))) == 4


def test_class_conditional_adm(tmp_path):
    pytest.importorskip("sda.models.unet")
    from sda.models.adm_flags import create_model

    flags = dict(
        image_size=8,
        num_channels=32,
        num_res_blocks=1,
        channel_mult="1,2",
        learn_sigma=True,
        class_cond=True,
        attention_resolutions="4",
        num_head_channels=32,
        use_scale_shift_norm=True,
        resblock_updown=True,
        use_fp16=False,
    )
    model = create_model(**flags, num_classes=10)
    torch.save(model.state_dict(), tmp_path / "adm.pt")
    argv = [
        "--model",
        "ADM",
        "--num-classes",
        "10",
        "--ckpt",
        str(tmp_path / "adm.pt"),
        "--num-sampling-steps",
        "2",
        "--classes",
        "0-2",
        "--images-per-class",
        "1",
        "--device",
        "cpu",
    ]
    adm_flags = [f"--{k}={v}" for k, v in flags.items()]
    generate(GenConfig.from_argv([*argv, "--out-dir", str(tmp_path / "a"), "--per-proc-batch-size", "1", *adm_flags]))
    generate(GenConfig.from_argv([*argv, "--out-dir", str(tmp_path / "b"), "--per-proc-batch-size", "4", *adm_flags]))
    a = sorted((tmp_path / "a").rglob("*.png"))
    assert [p.relative_to(tmp_path / "a") for p in a] == [
        p.relative_to(tmp_path / "b") for p in sorted((tmp_path / "b").rglob("*.png"))
    ]
    for p in a:  # the same noise per image; fp32 kernels may round differently per batch shape
        x = np.asarray(Image.open(p), dtype=int)
        y = np.asarray(Image.open(tmp_path / "b" / p.relative_to(tmp_path / "a")), dtype=int)
        assert len(a) == 3 and np.abs(x - y).max() <= 1
    assert Image.open(tmp_path / "a" / "0002" / "000000.png").size == (8, 8)
    with pytest.raises(UserError, match="class-conditional"):
        generate(GenConfig.from_argv([*argv, "--out-dir", str(tmp_path / "c"), *adm_flags, "--class_cond=False"]))
