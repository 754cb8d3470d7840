"""DiffPure as DDA's first author ran it on ImageNet-C (sda.align.diffpure): the terms against their formulas, the
noising, the number and placement of the Euler-Maruyama steps (as torchsde steps), determinism, and the whole
purification of a tiny UNet against torchsde integrating a transcription of the reference's reverse VP-SDE."""

from __future__ import annotations

import math

import align_helpers
import numpy as np
import pytest
import torch

from sda.align import diffpure as dp
from sda.align.config import ProjectionConfig
from sda.align.projection import predraw_noise, prepare_model, project
from sda.diffusion import create_diffusion
from sda.utils.seed import make_generator


def test_drift_and_diffusion_terms_follow_the_formulas() -> None:
    x = torch.full((2, 3, 4, 4), 0.5)
    eps = torch.full((2, 3, 4, 4), -0.2)
    t = torch.tensor(0.9)  # s = 0.1
    s = 0.1
    b = 0.1 + s * (20 - 0.1)
    abar = math.exp(-0.5 * (20 - 0.1) * s**2 - 0.1 * s)
    score = 0.2 / math.sqrt(1 - abar)  # -eps / sqrt(1 - abar)
    seen = []

    def eps_fn(xx: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        seen.append(steps)
        return eps

    f = dp.drift(eps_fn, t, x)
    assert torch.allclose(f, torch.full_like(x, 0.5 * b * 0.5 + b * score), rtol=1e-5)  # 0.5 beta x + beta score
    assert seen[0].tolist() == [100, 100]  # int(s * 1000) of float32 s = 1 - 0.9 = 0.10000002: step 100
    assert dp.diffusion_coefficient(t).item() == pytest.approx(math.sqrt(b), rel=1e-6)


def test_noising_uses_the_discrete_schedule_at_t_star_minus_one() -> None:
    x0, e = torch.full((1, 3, 2, 2), 0.3), torch.full((1, 3, 2, 2), 1.0)
    a = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[149]  # float64 reference
    assert torch.allclose(
        dp.noise_to(x0, 150, e), torch.full_like(x0, 0.3 * math.sqrt(a) + math.sqrt(1 - a)), atol=1e-6
    )
    d = create_diffusion("")  # the project's own 1000-step linear schedule agrees to float32 rounding
    assert np.allclose(dp.discrete_alphas_cumprod().double().numpy(), d.alphas_cumprod, rtol=1e-5)


def test_steps_are_placed_as_torchsde_places_them() -> None:
    torchsde = pytest.importorskip("torchsde")
    grid = dp.time_grid(150)
    assert len(grid) - 1 == dp.forwards_per_image(150) == 150  # dt 1e-3 from 0.85 to 1 - 1e-5
    assert grid[0].item() == pytest.approx(0.85) and grid[-1].item() == pytest.approx(1 - 1e-5)
    steps = [(b - a).item() for a, b in zip(grid[:-1], grid[1:], strict=True)]
    assert all(abs(s - 1e-3) < 1e-6 for s in steps[:-1]) and 0 < steps[-1] < 1e-3  # the last one is short

    class Recorder(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            self.times.append(t.item())
            return torch.zeros_like(y)

        def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(y)

    sde = Recorder()
    ts = torch.linspace(1 - 150 / 1000, 1 - 1e-5, 2)
    torchsde.sdeint(sde, torch.zeros(1, 2), ts, method="euler")  # the reference's call (dt: its 1e-3 default)
    assert sde.times[1:] == [t.item() for t in grid[:-1]]  # (its first call checks shapes) the same float32 times


class _Increments:
    """A torchsde Brownian motion that returns given increments, in order (shape (batch, state))."""

    def __init__(self, incs: list[torch.Tensor]):
        self.incs, self.k = incs, 0
        self.shape = incs[0].shape
        self.dtype, self.device = incs[0].dtype, incs[0].device
        self.levy_area_approximation = "none"

    def __call__(
        self, ta: torch.Tensor, tb: torch.Tensor | None = None, return_U: bool = False, return_A: bool = False
    ):
        inc = self.incs[self.k]
        self.k += 1
        return inc


class _ReferenceRevVPSDE(torch.nn.Module):
    """A transcription of the reference's RevVPSDE (score type guided_diffusion): f = -drift(1 - t),
    g = diffusion(1 - t), on flattened states, with its own order of operations."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, model: torch.nn.Module, img_shape: tuple[int, ...]):
        super().__init__()
        self.model, self.img_shape = model, img_shape
        self.abar_cont = lambda t: torch.exp(-0.5 * (20 - 0.1) * t**2 - 0.1 * t)

    def _rev(self, t: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
        beta_t = 0.1 + t * (20 - 0.1)
        drift, diffusion = -0.5 * beta_t[:, None] * x, torch.sqrt(beta_t)
        if kind == "diffusion":
            return diffusion
        steps = (t.float() * 1000).long()
        out = self.model(x.view(-1, *self.img_shape), steps)
        eps = torch.split(out, self.img_shape[0], dim=1)[0].reshape(x.shape[0], -1)
        score = (-1.0 / torch.sqrt(1.0 - self.abar_cont(t)))[:, None] * eps
        return drift - diffusion[:, None] ** 2 * score

    def f(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -self._rev(1 - t.expand(x.shape[0]), x, "drift")

    def g(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._rev(1 - t.expand(x.shape[0]), x, "diffusion")[:, None].expand(x.shape)


def test_purification_equals_torchsde_on_the_reference_sde() -> None:
    torchsde = pytest.importorskip("torchsde")
    torch.manual_seed(0)
    model = prepare_model(align_helpers.tiny_unet())
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    t_star = 20
    gens = [make_generator(k) for k in range(2)]
    noise, steps = predraw_noise(x0.shape, gens, dp.forwards_per_image(t_star), "cpu")
    with torch.no_grad():
        ours = list(dp.purify(model, x0, t_star, noise=noise, step_noise=steps))[-1]["sample"]
        grid = dp.time_grid(t_star)
        incs = [(z * (b - a).sqrt()).reshape(2, -1) for z, a, b in zip(steps, grid[:-1], grid[1:], strict=True)]
        x = dp.noise_to(x0, t_star, noise).reshape(2, -1)
        ts = torch.linspace(1 - t_star / 1000, 1 - 1e-5, 2)
        theirs = torchsde.sdeint(_ReferenceRevVPSDE(model, (3, 16, 16)), x, ts, method="euler", bm=_Increments(incs))
    assert len(grid) - 1 == 20
    assert torch.allclose(ours, theirs[-1].view_as(ours), atol=1e-5), (ours - theirs[-1].view_as(ours)).abs().max()
    assert (ours - x0).abs().mean() > 1e-3  # it did something


def test_purification_is_deterministic_per_image_and_seed() -> None:
    model, d = prepare_model(align_helpers.tiny_unet()), create_diffusion("10")
    cfg = ProjectionConfig(N=10, guidance="sde")
    refs = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    a = project(model, d, refs, cfg, generator=[make_generator(k) for k in range(3)])
    b = project(model, d, refs, cfg, generator=[make_generator(k) for k in range(3)])
    alone = project(model, d, refs[1:2], cfg, generator=[make_generator(1)])
    other = project(model, d, refs, cfg, generator=[make_generator(k + 10) for k in range(3)])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:2], alone, atol=align_helpers.FP32_TWO_ORDERS)  # no batch coupling
    assert not torch.allclose(a, other)  # the seed decides the draws
    noise, steps = predraw_noise(refs.shape, [make_generator(k) for k in range(3)], cfg.steps, "cpu")
    assert torch.equal(project(model, d, refs, cfg, noise=noise, step_noise=steps), a)  # pre-drawn: the same bits
    assert cfg.steps == 10 and ProjectionConfig(N=150, guidance="sde").steps == 150


def test_align_runs_the_sde_protocol_on_a_layout(tmp_path) -> None:
    from sda.utils.errors import UserError

    model, d = prepare_model(align_helpers.tiny_unet()), create_diffusion("10")
    rels = align_helpers.make_layout(tmp_path / "in", "C", corruptions=("fog",), size=(16, 16))
    kw = dict(base_samples=tmp_path / "in", save_dir=tmp_path / "out", datatype="C", image_size=16)
    kw.update(corruptions="fog", severities="5", batch_size=2)
    summary = align_helpers.project_flat(model, d, N=8, guidance="sde", **kw)
    assert summary["images"] == len(rels)
    with pytest.raises(UserError, match="1000-step linear schedule"):
        from sda.align.config import AlignConfig

        AlignConfig(**kw, projection=ProjectionConfig(guidance="sde"), model_flags={"diffusion_steps": 100})
