"""DDA guided projection: low-pass filter, known answers, reference semantics, norms, seeding."""

from __future__ import annotations

import dataclasses
import io

import align_helpers  # tests/align, on sys.path through conftest.py
import numpy as np
import pytest
import torch
from PIL import Image

from sda.align.config import ProjectionConfig
from sda.align.lowpass import LowPass, lowpass_resize_right
from sda.align.projection import prepare_model, project, project_progressive, project_reference_style
from sda.diffusion import create_diffusion, randn_like_gen
from sda.utils.images import to_uint8
from sda.utils.seed import make_generator


def tiny_unet(seed: int = 0) -> torch.nn.Module:
    return prepare_model(align_helpers.tiny_unet(seed), "fp32")


def smooth_refs(b: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, 4, 4, generator=g) * 1.6 - 0.8  # (B, 3, 4, 4)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def gens(b: int, base: int = 0) -> list[torch.Generator]:
    return [make_generator(base + k) for k in range(b)]


@pytest.mark.parametrize("size,D", [(16, 4), (32, 4), (64, 8), (32, 2), (16, 1), (256, 4)])
def test_lowpass_equals_resize_right(size: int, D: int) -> None:
    x = torch.randn(2, 3, size, size, dtype=torch.float32, requires_grad=True)
    a = lowpass_resize_right(x, D)
    b = LowPass(size, size, D)(x)
    assert torch.allclose(a, b, atol=2e-6), (a - b).abs().max()
    w = torch.randn_like(a)
    (ga,) = torch.autograd.grad((a * w).sum(), x)
    (gb,) = torch.autograd.grad((b * w).sum(), x)
    assert torch.allclose(ga, gb, atol=2e-6)


def test_a_bad_factor_is_refused_by_the_config_and_asserted_below() -> None:
    from sda.utils.errors import UserError

    with pytest.raises(UserError, match="power of two"):
        ProjectionConfig(D=3)
    with pytest.raises(UserError, match="divisible"):
        ProjectionConfig(D=8).check_against(20, 100)
    with pytest.raises(AssertionError):  # the math's precondition, for callers that skip the config
        LowPass(24, 24, 3)


class OracleEps(torch.nn.Module):
    """Predicts the exact noise of x_t for a known ref (zeros for the variance channels)."""

    def __init__(self, ref: torch.Tensor, alphas_cumprod: np.ndarray):
        super().__init__()
        self.ref = ref
        self.abar = torch.tensor(alphas_cumprod, dtype=torch.float64)
        self.w = torch.nn.Parameter(torch.zeros(()))  # a parameter so the device can be found

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.abar[t].view(-1, 1, 1, 1)  # t is the original (un-respaced) step
        eps = (x.double() - abar.sqrt() * self.ref.double()) / (1 - abar).sqrt()  # (B, 3, H, W)
        return torch.cat([eps.float(), torch.zeros_like(x)], dim=1)  # (B, 6, H, W)


def test_oracle_model_projects_back_to_the_input() -> None:
    diffusion = create_diffusion("20")
    base = create_diffusion("")  # the 1000-step process the model is trained on
    ref = smooth_refs(3)
    model = OracleEps(ref, base.alphas_cumprod)
    out = project(model, diffusion, ref, ProjectionConfig(N=10, D=4, scale=6.0), generator=gens(3))
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()


def test_scale_zero_equals_plain_noising_and_denoising() -> None:
    model, diffusion, ref = tiny_unet(), create_diffusion("10"), smooth_refs(2)
    out = project(model, diffusion, ref, ProjectionConfig(N=5, D=4, scale=0.0), generator=gens(2))
    g = gens(2)
    with torch.no_grad():
        x = diffusion.q_sample(ref, torch.full((2,), 5), generator=g)
        for i in range(4, -1, -1):
            x = diffusion.p_sample(model, x, torch.full((2,), i), clip_denoised=True, generator=g)["sample"]
    assert torch.allclose(out, x, atol=1e-6)


def test_matches_reference_loop_and_explicit_noise() -> None:
    model, diffusion, ref = tiny_unet(), create_diffusion("10"), smooth_refs(3)
    g = gens(3, base=7)
    noises = [randn_like_gen(ref.shape, g) for _ in range(5 + 1)]  # q_sample noise, then one per step
    cfg = ProjectionConfig(N=5, D=4, scale=6.0)
    expected = project_reference_style(model, diffusion, ref, cfg, noises)
    by_gen = project(model, diffusion, ref, cfg, generator=gens(3, base=7))
    by_noise = project(model, diffusion, ref, cfg, noise=noises[0], step_noise=noises[1:])
    assert torch.equal(by_gen, by_noise)
    # two float32 summation orders (low-pass as matrices vs resize-right): see align_helpers.FP32_TWO_ORDERS
    assert torch.allclose(by_gen, expected, atol=align_helpers.FP32_TWO_ORDERS), (by_gen - expected).abs().max()
    slow = project(model, diffusion, ref, cfg, generator=gens(3, base=7), lowpass=lambda x: lowpass_resize_right(x, 4))
    assert torch.allclose(slow, expected, atol=1e-6)


def test_batch_and_sample_norms() -> None:
    model, diffusion = tiny_unet(), create_diffusion("10")
    batch = ProjectionConfig(N=4, D=4, scale=6.0, guidance_norm="batch")
    sample = ProjectionConfig(N=4, D=4, scale=6.0, guidance_norm="sample")
    one = smooth_refs(1)
    a = project(model, diffusion, one, batch, generator=gens(1))
    b = project(model, diffusion, one, sample, generator=gens(1))
    assert torch.allclose(a, b, atol=1e-6)
    three = smooth_refs(3)
    a = project(model, diffusion, three, batch, generator=gens(3))
    b = project(model, diffusion, three, sample, generator=gens(3))
    assert (a - b).abs().max() > 1e-3


def test_sample_norm_is_independent_of_the_batch() -> None:
    model, diffusion = tiny_unet(), create_diffusion("10")
    cfg = ProjectionConfig(N=4, D=4, scale=6.0, guidance_norm="sample")
    refs = smooth_refs(3)
    together = project(model, diffusion, refs, cfg, generator=gens(3))
    alone = project(model, diffusion, refs[1:2], cfg, generator=gens(3)[1:2])
    other = torch.cat([smooth_refs(1, seed=5), refs[1:2]])
    mixed = project(model, diffusion, other, cfg, generator=[make_generator(99), gens(3)[1]])
    # batch 3 vs batch 1 runs other kernel blockings (align_helpers.FP32_TWO_ORDERS); the batch-coupled norm moves an
    # image by > 1e-3 (test_batch_and_sample_norms), so the bound still tells coupling from rounding
    assert torch.allclose(together[1:2], alone, atol=align_helpers.FP32_TWO_ORDERS)
    assert torch.allclose(mixed[1:2], alone, atol=align_helpers.FP32_TWO_ORDERS)
    batch = dataclasses.replace(cfg, guidance_norm="batch")
    batch_alone = project(model, diffusion, refs[1:2], batch, generator=gens(3)[1:2])
    batch_together = project(model, diffusion, refs, batch, generator=gens(3))
    assert (batch_together[1:2] - batch_alone).abs().max() > 1e-4  # the reference norm couples images


def test_progressive_yields_n_steps_and_norms() -> None:
    model, diffusion, ref = tiny_unet(), create_diffusion("10"), smooth_refs(2)
    steps = list(project_progressive(model, diffusion, ref, ProjectionConfig(N=3, D=4, scale=1.0), generator=gens(2)))
    assert len(steps) == 3 and all(s["norm"].ndim == 0 for s in steps)
    with pytest.raises(AssertionError):  # users meet ProjectionConfig.check_against first
        list(project_progressive(model, diffusion, ref, ProjectionConfig(N=11)))


def test_bf16_precision_runs_close_to_fp32() -> None:
    diffusion, ref = create_diffusion("10"), smooth_refs(2)
    cfg = ProjectionConfig(N=3, D=4, scale=6.0)
    fp32 = project(tiny_unet(), diffusion, ref, cfg, generator=gens(2))
    bf16 = project(prepare_model(tiny_unet(), "bf16"), diffusion, ref, cfg, generator=gens(2))
    assert bf16.dtype == torch.float32
    assert torch.isfinite(bf16).all() and (bf16 - fp32).abs().mean() < 0.02


def test_to_uint8_matches_torchvision_save_image() -> None:
    from torchvision.utils import save_image

    x = torch.linspace(-1.2, 1.2, 3 * 8 * 8).reshape(1, 3, 8, 8)
    buf = io.BytesIO()
    save_image(x, buf, format="PNG", nrow=1, normalize=True, value_range=(-1, 1))
    expected = np.array(Image.open(buf))  # (8, 8, 3)
    assert np.array_equal(to_uint8(x[0], "adm").permute(1, 2, 0).numpy(), expected)


def test_diffpure_with_zero_steps_returns_the_input() -> None:
    model, diffusion, ref = tiny_unet(), create_diffusion("10"), smooth_refs(2)
    out = project(model, diffusion, ref, ProjectionConfig(N=0, guidance="none"), generator=gens(2))
    assert torch.equal(out, ref)


def test_diffpure_is_noise_to_n_minus_1_then_unguided_ddpm() -> None:
    """DiffPure's DDPM runner: q_sample at t*-1, then p_sample from t*-1 down to 0 (t* steps), no guidance."""
    model, diffusion, ref = tiny_unet(), create_diffusion("10"), smooth_refs(2)
    out = project(model, diffusion, ref, ProjectionConfig(N=4, guidance="none", scale=6.0), generator=gens(2))
    g = gens(2)
    with torch.no_grad():
        x = diffusion.q_sample(ref, torch.full((2,), 3), generator=g)
        for i in range(3, -1, -1):
            x = diffusion.p_sample(model, x, torch.full((2,), i), clip_denoised=True, generator=g)["sample"]
    assert torch.allclose(out, x, atol=1e-6)
    guided = project(model, diffusion, ref, ProjectionConfig(N=4, scale=6.0), generator=gens(2))
    assert (guided - out).abs().max() > 1e-3  # the guidance mode is a different projection
