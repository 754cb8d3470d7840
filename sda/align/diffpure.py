"""DiffPure's purification as DDA's first author ran it for ImageNet-C: the reverse VP-SDE by Euler-Maruyama.

Source: the public repository ``shiyegao/DiffPure`` ("Purification for ImageNet-C"), ``runners/diffpure_sde.py`` run
by ``run_scripts/imagenet/generate.sh`` (``generate.py --config imagenet.yml --t 150 --diffusion_type sde``), written
anew here from its equations:

1. the input x0 in [-1, 1] is noised with the *discrete* 1000-step linear schedule (betas from 1e-4 to 0.02):
   ``x = sqrt(abar[t* - 1]) x0 + sqrt(1 - abar[t* - 1]) e``;
2. the reverse VP-SDE (beta(s) = 0.1 + s (20 - 0.1)) is integrated in the variable t = 1 - s from 1 - t*/1000 to
   1 - 1e-5 with fixed steps dt = 1e-3 (the default of ``torchsde.sdeint``, method ``euler``: the last step stops at
   1 - 1e-5), each ``x += f(t, x) dt + g(t) dW`` with dW ~ N(0, dt):
   ``g = sqrt(beta(s))`` and ``f = 0.5 beta(s) x + beta(s) score``, ``score = -eps / sqrt(1 - abar_cont(s))``,
   ``abar_cont(s) = exp(-0.5 (20 - 0.1) s^2 - 0.1 s)``, eps the first image channels of the unconditional ADM's
   output at the integer step ``int(s * 1000)``;
3. nothing is clipped; the result is saved as ``(x + 1) / 2`` (torchvision's ``save_image``, the same uint8
   mapping as align's).

Time arithmetic follows ``torchsde`` (float32 times, ``next = min(t + dt, t_end)``), so the model sees the same
integer steps. The random draws come from each image's own generator (the reference draws from one global
stream), so an image's purification does not depend on its batch or the number of GPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from sda.diffusion import randn_like_gen
from sda.diffusion.noise import Generators

BETA_MIN, BETA_MAX = 0.1, 20.0  # beta(s) = BETA_MIN + s (BETA_MAX - BETA_MIN): the VP-SDE of the 1000-step schedule
STEPS = 1000  # the discrete schedule the model was trained on (the continuous time s maps to int(s * STEPS))
T_END = 1e-5  # the integration stops at t = 1 - T_END
DT = 1e-3  # torchsde's default step of sdeint(method="euler"), which DiffPure's call keeps

# eps of the model's output at integer steps: (x_t (B, C, H, W), steps (B,)) -> eps (B, C, H, W)
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def beta(s: torch.Tensor) -> torch.Tensor:
    """beta(s) of the VP-SDE (s in [0, 1])."""
    return BETA_MIN + s * (BETA_MAX - BETA_MIN)


def alphas_cumprod_cont(s: torch.Tensor) -> torch.Tensor:
    """abar(s) = exp(-0.5 (beta_max - beta_min) s^2 - beta_min s), the continuous ``alphas_cumprod``."""
    return torch.exp(-0.5 * (BETA_MAX - BETA_MIN) * s**2 - BETA_MIN * s)


def discrete_alphas_cumprod() -> torch.Tensor:
    """The 1000-step linear schedule's ``alphas_cumprod`` in float32, as the reference computes it (STEPS,)."""
    betas = torch.linspace(BETA_MIN / STEPS, BETA_MAX / STEPS, STEPS)
    return torch.cumprod(1.0 - betas, dim=0)


def noise_to(x0: torch.Tensor, t_star: int, e: torch.Tensor) -> torch.Tensor:
    """Step 1: x0 noised to discrete step t* - 1 with the noise ``e`` (both (B, C, H, W))."""
    a = discrete_alphas_cumprod().to(x0.device)[t_star - 1]
    return x0 * a.sqrt() + e * (1.0 - a).sqrt()


def time_grid(t_star: int, dt: float = DT) -> list[torch.Tensor]:
    """The integration times t_0 = 1 - t*/1000, t_0 + dt, ..., 1 - 1e-5 as float32 scalars, exactly as torchsde
    steps them (``next = min(t + dt, t_end)``; the last step is shorter)."""
    ts = torch.linspace(1 - t_star / STEPS, 1 - T_END, 2)  # float32, as the reference's ts
    t, grid = ts[0], [ts[0]]
    while t < ts[-1]:
        t = min(t + dt, ts[-1])
        grid.append(t)
    return grid


def drift(eps_fn: EpsFn, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """f(t, x) of the integrated SDE: minus the reverse-SDE drift at s = 1 - t (x (B, C, H, W), t scalar), in the
    reference's order of operations (g^2 as sqrt(beta)^2, the score as a product with -1/sqrt(1 - abar))."""
    s = (1 - t).expand(x.shape[0])  # (B,)
    steps = (s.float() * STEPS).long()  # (B,) the model's integer step
    shape = (-1, *[1] * (x.ndim - 1))
    b = beta(s).view(shape)  # (B, 1, 1, 1)
    score = (-1.0 / torch.sqrt(1.0 - alphas_cumprod_cont(s))).view(shape) * eps_fn(x, steps)  # (B, C, H, W)
    reverse = -0.5 * b * x - torch.sqrt(b) ** 2 * score
    return -reverse


def diffusion_coefficient(t: torch.Tensor) -> torch.Tensor:
    """g(t) = sqrt(beta(1 - t)) (a scalar for the whole state: diagonal noise of one level)."""
    return torch.sqrt(beta(1 - t))


def purify_progressive(
    eps_fn: EpsFn,
    x0: torch.Tensor,
    t_star: int,
    generator: Generators = None,
    dt: float = DT,
    noise: torch.Tensor | None = None,
    increments: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Steps 1-2 on x0 (B, C, H, W) in [-1, 1]: yields dict(sample, t) after each Euler-Maruyama step.

    Draws, per generator: the noising noise, then one standard normal tensor per step (scaled by sqrt(dt_k)).
    ``noise``: the noising draw instead; ``increments(k, t0, t1)``: the Brownian increment of step k instead
    (e.g. a ``torchsde`` Brownian motion, for the equivalence test). t* = 0 returns x0 unchanged.
    """
    if t_star == 0:
        yield {"sample": x0.clone(), "t": torch.tensor(1.0)}
        return
    device = x0.device
    e = noise if noise is not None else randn_like_gen(x0.shape, generator, device, torch.float32)
    x = noise_to(x0.float(), t_star, e.to(device=device, dtype=torch.float32))  # (B, C, H, W)
    grid = [t.to(device) for t in time_grid(t_star, dt)]
    for k, (t0, t1) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        step = t1 - t0
        if increments is not None:
            dw = increments(k, t0, t1).view_as(x)
        else:
            dw = randn_like_gen(x.shape, generator, device, torch.float32) * step.sqrt()  # (B, C, H, W)
        x = x + drift(eps_fn, t0, x) * step + diffusion_coefficient(t0) * dw
        yield {"sample": x, "t": t1}


def eps_of(model: Callable[..., torch.Tensor], prediction: str, channels: int) -> EpsFn:
    """The model's epsilon at integer steps of the 1000-step schedule: its first ``channels`` output channels
    (the reference's guided-diffusion models predict epsilon); a v- or x0-predicting model's output is
    converted with that schedule."""
    abar = discrete_alphas_cumprod()

    def eps(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        out = model(x, steps)[:, :channels].float()  # (B, C, H, W)
        if prediction == "epsilon":
            return out
        a = abar.to(x.device)[steps].view(-1, *[1] * (x.ndim - 1))  # (B, 1, 1, 1)
        if prediction == "v":  # x_t = sqrt(a) x0 + sqrt(1 - a) eps, v = sqrt(a) eps - sqrt(1 - a) x0
            return a.sqrt() * out + (1 - a).sqrt() * x
        return (x - a.sqrt() * out) / (1 - a).sqrt()  # x0 prediction

    return eps


def forwards_per_image(t_star: int, dt: float = DT) -> int:
    """Model forward passes per purified image (no backward): one per Euler-Maruyama step."""
    return len(time_grid(t_star, dt)) - 1


def purify(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    t_star: int,
    prediction: str = "epsilon",
    generator: Generators = None,
    dt: float = DT,
    noise: torch.Tensor | None = None,
    step_noise: Sequence[torch.Tensor] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """:func:`purify_progressive` with a diffusion model; ``step_noise``: the per-step standard normals."""
    inc = None if step_noise is None else (lambda k, t0, t1: step_noise[k].to(x0.device) * (t1 - t0).sqrt())
    yield from purify_progressive(eps_of(model, prediction, x0.shape[1]), x0, t_star, generator, dt, noise, inc)
