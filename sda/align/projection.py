"""DDA's low-pass-guided projection into the synthetic domain of an unconditional diffusion model.

Algorithm (Gao et al., CVPR 2023; used unchanged by SDA), on a respaced schedule:

    x = q_sample(ref, t=N)                                  # noised to index N ...
    for i = N-1 .. 0:                                       # ... but first denoised at N-1
        out  = p_sample(model, x, i, clip_denoised=True)    # with gradients w.r.t. x
        diff = LPF(ref) - LPF(out.pred_xstart)
        norm = ||diff||_2                                   # over the whole batch tensor (reference)
        x    = out.sample - scale * d norm / d x            # then detached

LPF is ``sda.align.lowpass``. The reference's norm couples the images of a batch: each image's guidance
is divided by the norm of the whole batch. ``guidance_norm="sample"`` sums per-image norms instead, so an
image's result depends only on itself and its own noise (not on batch size, neighbours or the number of
GPUs).

Speed: a guided step costs one UNet forward plus one backward to the input; everything else here (the
low-pass matmuls, the posterior mean/variance, the sample) is within timing noise of zero on CPU.
``torch.autograd.grad(norm, x)`` already skips the weight-gradient convolutions whether or not the weights
require grad, so the levers are the UNet's kernels: ``prepare_model(..., compile=True)``, bf16/fp16
(changes outputs), channels_last (helps some configs, hurts the small mini UNet) and threads
(see ``benchmarks/bench_align.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from sda.align.config import PRECISIONS, ProjectionConfig
from sda.align.diffpure import purify
from sda.align.lowpass import LowPass, LowPassFn, lowpass_resize_right
from sda.diffusion import randn_like_gen
from sda.diffusion.gaussian_diffusion import ModelMeanType, final_sample
from sda.diffusion.noise import Generators
from sda.utils.precision import Autocast


# ----------------------------------------------------------------------------- model precision
def prepare_model(
    model: nn.Module,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str = "default",
) -> nn.Module:
    """Set up a UNet for projection: eval, frozen weights, precision, memory format, optional compile.

    precision: "fp32"; "fp16" = the reference's ``convert_to_fp16()`` (float16 torso, float32 norms
    and head); "bf16" = float32 weights under bfloat16 autocast. Weights are frozen: the projection
    only needs gradients with respect to the image, not the parameters. ``compile_mode``: torch.compile's
    mode (``reduce-overhead`` replays CUDA graphs; the step loop keeps every shape static for it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {PRECISIONS}")
    model.eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if precision == "fp16":
        if not hasattr(model, "convert_to_fp16"):
            raise ValueError("fp16 needs a model with convert_to_fp16() (the ADM UNet)")
        model.convert_to_fp16()
    elif hasattr(model, "convert_to_fp32"):
        model.convert_to_fp32()  # a model built with use_fp16=True computes in float16 otherwise
    if compile:
        model = torch.compile(model, mode=compile_mode)
    if precision == "bf16":
        device = next(model.parameters()).device
        model = Autocast(model, "bf16", device.type)
    return model


# ----------------------------------------------------------------------------- the projection
def guidance_norm_of(diff: torch.Tensor, guidance_norm: str = "batch") -> torch.Tensor:
    """Scalar to differentiate: ||diff|| over the batch tensor, or the sum of per-image norms."""
    if guidance_norm == "batch":
        return torch.linalg.vector_norm(diff)  # ()
    if guidance_norm == "sample":
        return torch.linalg.vector_norm(diff.flatten(1), dim=1).sum()  # ()
    raise ValueError(f"guidance_norm {guidance_norm!r}: use 'batch' or 'sample'")


def project_progressive(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    ref: torch.Tensor,
    cfg: ProjectionConfig,
    *,
    generator: Generators = None,
    noise: torch.Tensor | None = None,
    step_noise: Sequence[torch.Tensor] | None = None,
    lowpass: LowPassFn | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield, for each step i = N-1 .. 0, dict(sample, pred_xstart, norm) of the guided projection.

    :param model: eps (and variance) model, called by ``diffusion`` with original timesteps.
    :param diffusion: a (Spaced)Diffusion; ``cfg.N`` indexes its (respaced) steps.
    :param ref: (B, C, H, W) reference images in [-1, 1] (float32).
    :param cfg: N, D, scale, the guidance norm and clip_denoised.
    :param generator: None (global RNG), one generator, or one CPU generator per image. Draw order
        per generator: the q_sample noise, then one tensor per step (the last one unused), as the
        reference draws them.
    :param noise: (B, C, H, W) explicit q_sample noise; step_noise: N explicit per-step tensors
        (i = N-1 first). Either replaces the generator draws for its part.
    :param lowpass: the LPF; None -> :class:`LowPass` for ref's size and D on ref's device.
    """
    N = cfg.N
    if step_noise is not None and len(step_noise) != cfg.steps:
        raise ValueError(f"step_noise has {len(step_noise)} tensors, need {cfg.steps}")
    if cfg.guidance == "sde":  # DiffPure as DDA's author ran it on ImageNet-C: on the 1000-step schedule
        prediction = {ModelMeanType.VELOCITY: "v", ModelMeanType.START_X: "x0"}.get(
            diffusion.model_mean_type, "epsilon"
        )
        yield from purify(model, ref.float(), N, prediction, generator, cfg.sde_dt, noise, step_noise)
        return
    assert N <= diffusion.num_timesteps, (N, diffusion.num_timesteps)  # the user check: ProjectionConfig.check_against
    if cfg.guidance == "none":
        yield from _unguided(model, diffusion, ref.float(), cfg, generator, noise, step_noise)
        return
    B, _, H, W = ref.shape
    device = ref.device
    ref = ref.float()
    lowpass = LowPass(H, W, cfg.D, device) if lowpass is None else lowpass
    with torch.no_grad():
        ref_low = lowpass(ref)  # (B, C, H, W), constant over the steps
        if noise is None:
            noise = randn_like_gen(ref.shape, generator, device, torch.float32)  # (B, C, H, W)
        t = torch.full((B,), N, device=device, dtype=torch.long)  # (B,)
        x = diffusion.q_sample(ref, t, noise=noise.to(device=device, dtype=torch.float32))  # (B, C, H, W)

    for k, i in enumerate(range(N - 1, -1, -1)):
        t = torch.full((B,), i, device=device, dtype=torch.long)  # (B,)
        z = None if step_noise is None else step_noise[k].to(device=device, dtype=torch.float32)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            out = diffusion.p_sample(
                model,
                x,
                t,
                clip_denoised=cfg.clip_denoised,
                noise=z,
                generator=generator,
            )
            diff = ref_low - lowpass(out["pred_xstart"])  # (B, C, H, W)
            norm = guidance_norm_of(diff, cfg.guidance_norm)  # ()
            if cfg.scale != 0:
                (grad,) = torch.autograd.grad(norm, x)  # (B, C, H, W)
        sample = out["sample"].detach()  # (B, C, H, W)
        if cfg.scale != 0:
            sample = sample - cfg.scale * grad
        x = sample
        yield {"sample": sample, "pred_xstart": out["pred_xstart"].detach(), "norm": norm.detach()}


def predraw_noise(
    shape: Sequence[int], generators: Sequence[torch.Generator], steps: int, device: torch.device | str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """All the noise a projection draws, drawn before the loop: (q_sample noise, one tensor per step).

    Each image's generator yields its draws in the order the loop makes them, so passing these as
    ``noise=`` / ``step_noise=`` gives the same result bit for bit; the step loop then has static shapes
    and no host work (what CUDA graphs and ``torch.compile(mode="reduce-overhead")`` need).
    """
    per_image = [
        torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=g.device) for _ in range(steps + 1)])
        for g in generators
    ]  # B x (steps + 1, C, H, W)
    draws = torch.stack(per_image, dim=1).to(device)  # (steps + 1, B, C, H, W)
    return draws[0], list(draws[1:])


@torch.no_grad()
def _unguided(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    ref: torch.Tensor,
    cfg: ProjectionConfig,
    generator: Generators,
    noise: torch.Tensor | None,
    step_noise: Sequence[torch.Tensor] | None,
) -> Iterator[dict[str, torch.Tensor]]:
    """DiffPure: ``x = q_sample(ref, N-1)``, then ``p_sample`` for i = N-1 .. 0 without guidance (N steps,
    as DiffPure's DDPM runner: noised to t*-1 and denoised to 0). Yields dict(sample, pred_xstart, norm=0)."""
    B, device = ref.shape[0], ref.device
    if noise is None:
        noise = randn_like_gen(ref.shape, generator, device, torch.float32)  # (B, C, H, W)
    if cfg.N == 0:  # nothing to purify
        yield {"sample": ref.clone(), "pred_xstart": ref.clone(), "norm": torch.zeros((), device=device)}
        return
    t = torch.full((B,), cfg.N - 1, device=device, dtype=torch.long)  # (B,)
    x = diffusion.q_sample(ref, t, noise=noise.to(device=device, dtype=torch.float32))  # (B, C, H, W)
    for k, i in enumerate(range(cfg.N - 1, -1, -1)):
        t = torch.full((B,), i, device=device, dtype=torch.long)  # (B,)
        z = None if step_noise is None else step_noise[k].to(device=device, dtype=torch.float32)
        out = diffusion.p_sample(model, x, t, clip_denoised=cfg.clip_denoised, noise=z, generator=generator)
        x = out["sample"]  # (B, C, H, W)
        yield {"sample": x, "pred_xstart": out["pred_xstart"], "norm": torch.zeros((), device=device)}


# The projected images (B, C, H, W) of ``ref``: the last step of :func:`project_progressive` (its arguments).
project = final_sample(project_progressive)


def project_reference_style(
    model: nn.Module,
    diffusion: Any,
    ref: torch.Tensor,
    cfg: ProjectionConfig,
    noises: Sequence[torch.Tensor],
) -> torch.Tensor:
    """The reference's loop written out plainly (resize-right on ``ref`` and ``pred_xstart`` every step,
    batch-coupled norm, in-place update): the baseline of ``benchmarks/bench_align.py`` and the
    equivalence oracle of the tests. ``noises``: the q_sample draw, then one draw per step."""
    N, D, B = cfg.N, cfg.D, ref.shape[0]
    img = diffusion.q_sample(ref, torch.full((B,), N, device=ref.device), noise=noises[0])  # (B, C, H, W)
    for k, i in enumerate(range(N - 1, -1, -1)):
        img = img.requires_grad_()
        out = diffusion.p_sample(
            model, img, torch.full((B,), i, device=ref.device), clip_denoised=True, noise=noises[k + 1]
        )
        difference = lowpass_resize_right(ref, D) - lowpass_resize_right(out["pred_xstart"], D)
        norm = torch.linalg.norm(difference)
        norm_grad = torch.autograd.grad(outputs=norm, inputs=img)[0]
        out["sample"] -= norm_grad * cfg.scale
        img = out["sample"].detach_()
    return img
