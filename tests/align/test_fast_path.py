"""The projection's fast path, piece by piece: pre-drawn noise (a static step loop) gives the same bits;
channels_last matches fp32 to rounding; the half-precision paths stay within a bound of fp32."""

from __future__ import annotations

import align_helpers
import pytest
import torch

from sda.align.config import ProjectionConfig
from sda.align.projection import predraw_noise, prepare_model, project
from sda.diffusion import create_diffusion
from sda.utils.images import to_uint8
from sda.utils.seed import make_generator

CFG = ProjectionConfig(N=3, D=4, scale=6.0)


def refs(b: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    low = torch.rand(b, 3, 4, 4, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)


def gens(b: int) -> list[torch.Generator]:
    return [make_generator(100 + k) for k in range(b)]


@pytest.mark.parametrize("guidance", ["lowpass", "none"])
def test_predrawn_noise_is_bit_identical(guidance: str) -> None:
    model, diffusion, ref = prepare_model(align_helpers.tiny_unet()), create_diffusion("10"), refs(3)
    cfg = ProjectionConfig(N=3, D=4, scale=6.0, guidance=guidance)
    by_gen = project(model, diffusion, ref, cfg, generator=gens(3))
    noise, steps = predraw_noise(ref.shape, gens(3), cfg.N, "cpu")
    assert noise.shape == ref.shape and len(steps) == cfg.N
    assert torch.equal(project(model, diffusion, ref, cfg, noise=noise, step_noise=steps), by_gen)


def test_channels_last_matches_fp32() -> None:
    diffusion, ref = create_diffusion("10"), refs(2)
    plain = project(prepare_model(align_helpers.tiny_unet()), diffusion, ref, CFG, generator=gens(2))
    cl = project(prepare_model(align_helpers.tiny_unet(), channels_last=True), diffusion, ref, CFG, generator=gens(2))
    assert (plain - cl).abs().max() < 1e-5


@pytest.mark.parametrize("precision,bound", [("bf16", 24), ("fp16", 12)])
def test_half_precision_stays_within_a_bound_of_fp32(precision: str, bound: int) -> None:
    """Pixel levels (0-255) after a short projection with random weights; the GPU rows of the device check
    report the same deviation for the full model."""
    diffusion, ref = create_diffusion("10"), refs(2)
    fp32 = to_uint8(project(prepare_model(align_helpers.tiny_unet()), diffusion, ref, CFG, generator=gens(2)), "adm")
    half_model = prepare_model(align_helpers.tiny_unet(use_fp16=precision == "fp16"), precision)
    half = to_uint8(project(half_model, diffusion, ref, CFG, generator=gens(2)), "adm")
    dev = (half.int() - fp32.int()).abs()
    assert dev.max() <= bound and dev.float().mean() < 2.0
