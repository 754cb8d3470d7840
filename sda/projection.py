"""DDA's low-pass-guided projection into the synthetic domain of an unconditional diffusion model.

Algorithm (Gao et al., CVPR 2023; used unchanged by SDA), on a respaced schedule:

    x = q_sample(ref, t=N)                                  # noised to index N ...
    for i = N-1 .. 0:                                       # ... but first denoised at N-1
        out  = p_sample(model, x, i, clip_denoised=True)    # with gradients w.r.t. x
        diff = LPF(ref) - LPF(out.pred_xstart)
        norm = ||diff||_2                                   # over the whole batch tensor (reference)
        x    = out.sample - scale * d norm / d x            # then detached

LPF is resize-right's cubic, antialiased downsample by D followed by a cubic upsample by D. Both
resizes are linear and separable, so :class:`LowPass` precomputes them once as one (H, H) and one
(W, W) matrix taken from resize-right itself and applies them as two batched matmuls on the device;
:func:`lowpass_resize_right` is the reference's per-call resize-right path.

The reference's norm couples the images of a batch: each image's guidance is divided by the norm of
the whole batch. ``guidance_norm="sample"`` sums per-image norms instead, so an image's result depends
only on itself and its own noise (not on batch size, neighbours or the number of GPUs).

Speed: a guided step costs one UNet forward plus one backward to the input; everything else here (the
low-pass matmuls, the posterior mean/variance, the sample) is within timing noise of zero on CPU.
``torch.autograd.grad(norm, x)`` already skips the weight-gradient convolutions whether or not the weights
require grad, so the levers are the UNet's kernels: ``prepare_model(..., compile=True)``, bf16/fp16
(changes outputs), channels_last (helps some configs, hurts the small mini UNet) and threads
(see ``benchmarks/bench_align.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from sda.diffusion import randn_like_gen
from sda.diffusion.noise import Generators

GUIDANCE_NORMS = ("batch", "sample")
PRECISIONS = ("fp32", "fp16", "bf16")
LowPassFn = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- low-pass filter
def check_downsample(size: int, D: int) -> None:
    """The reference asserts log2(D) is an integer; the LPF also needs size divisible by D."""
    if D < 1 or not math.log2(D).is_integer():
        raise ValueError(f"D={D}: the low-pass factor must be a power of two (1, 2, 4, 8, ...)")
    if size % D != 0:
        raise ValueError(f"image size {size} is not divisible by D={D}: choose D dividing the image size")


def lowpass_resize_right(x: torch.Tensor, D: int) -> torch.Tensor:
    """The reference's LPF: resize-right cubic antialiased down by D, then cubic up by D (N, C, H, W)."""
    from resize_right import resize

    n, c, h, w = x.shape
    small = resize(x, scale_factors=1.0 / D, out_shape=(n, c, h // D, w // D))  # (N, C, H/D, W/D)
    return resize(small, scale_factors=D, out_shape=(n, c, h, w))  # (N, C, H, W)


def _resize_matrix(n_in: int, factor: float, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of resize-right's 1-D cubic (antialiased) resize by ``factor``.

    Built by resizing the identity with resize-right itself, so the weights are exactly its weights
    (computed in float32 by resize-right, held here in float64).
    """
    from resize_right import resize

    eye = torch.eye(n_in, dtype=torch.float64).reshape(1, 1, n_in, n_in)  # row i = unit impulse at i
    out = resize(eye, scale_factors=[1.0, factor], out_shape=(1, 1, n_in, n_out))  # (1, 1, n_in, n_out)
    return out[0, 0].T.contiguous()  # (n_out, n_in)


def lowpass_matrix(n: int, D: int) -> torch.Tensor:
    """(n, n) float64 matrix of resize-right's down-by-D-then-up-by-D along one axis."""
    down = _resize_matrix(n, 1.0 / D, n // D)  # (n/D, n)
    up = _resize_matrix(n // D, float(D), n)  # (n, n/D)
    return up @ down  # (n, n)


class LowPass:
    """LPF(x) = L_h @ x @ L_w^T with precomputed resize-right matrices, on any device and in autograd.

    Equals :func:`lowpass_resize_right` to float32 rounding (the tests check it).
    """

    def __init__(
        self, height: int, width: int, D: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ):
        check_downsample(height, D)
        check_downsample(width, D)
        self.D = D
        self.shape = (height, width)
        self.left = lowpass_matrix(height, D).to(device=device, dtype=dtype)  # (H, H)
        self.right_t = lowpass_matrix(width, D).T.contiguous().to(device=device, dtype=dtype)  # (W, W)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"LowPass built for {self.shape}, got an input of spatial size {tuple(x.shape[-2:])}")
        x = x.to(self.left.dtype)
        return torch.matmul(torch.matmul(self.left, x), self.right_t)  # (N, C, H, W)


# ----------------------------------------------------------------------------- model precision
class _CastOutput(nn.Module):
    """Run ``model`` under ``autocast(dtype)`` and return float32 outputs."""

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.autocast_dtype = dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.autocast_dtype):
            out = self.model(x, t, **kwargs)  # (N, C_out, H, W)
        return out.float()


def prepare_model(
    model: nn.Module, precision: str = "fp32", channels_last: bool = False, compile: bool = False
) -> nn.Module:
    """Set up a UNet for projection: eval, frozen weights, precision, memory format, optional compile.

    precision: "fp32"; "fp16" = the reference's ``convert_to_fp16()`` (float16 torso, float32 norms
    and head); "bf16" = float32 weights under bfloat16 autocast. Weights are frozen: the projection
    only needs gradients with respect to the image, not the parameters.
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
        model = torch.compile(model)
    if precision == "bf16":
        device = next(model.parameters()).device
        model = _CastOutput(model, device.type, torch.bfloat16)
    return model


# ----------------------------------------------------------------------------- the projection
def guidance_norm_of(diff: torch.Tensor, guidance_norm: str = "batch") -> torch.Tensor:
    """Scalar to differentiate: ||diff|| over the batch tensor, or the sum of per-image norms."""
    if guidance_norm == "batch":
        return torch.linalg.vector_norm(diff)  # ()
    if guidance_norm == "sample":
        return torch.linalg.vector_norm(diff.flatten(1), dim=1).sum()  # ()
    raise ValueError(f"guidance_norm {guidance_norm!r}: use one of {GUIDANCE_NORMS}")


def project_progressive(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    ref: torch.Tensor,
    *,
    N: int = 50,
    D: int = 4,
    scale: float = 6.0,
    guidance_norm: str = "batch",
    generator: Generators = None,
    noise: torch.Tensor | None = None,
    step_noise: Sequence[torch.Tensor] | None = None,
    lowpass: LowPassFn | None = None,
    clip_denoised: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield, for each step i = N-1 .. 0, dict(sample, pred_xstart, norm) of the guided projection.

    :param model: eps (and variance) model, called by ``diffusion`` with original timesteps.
    :param diffusion: a (Spaced)Diffusion; N indexes its (respaced) steps.
    :param ref: (B, C, H, W) reference images in [-1, 1] (float32).
    :param generator: None (global RNG), one generator, or one CPU generator per image. Draw order
        per generator: the q_sample noise, then one tensor per step (the last one unused), as the
        reference draws them.
    :param noise: (B, C, H, W) explicit q_sample noise; step_noise: N explicit per-step tensors
        (i = N-1 first). Either replaces the generator draws for its part.
    :param lowpass: the LPF; None -> :class:`LowPass` for ref's size and D on ref's device.
    """
    if not 0 < N <= diffusion.num_timesteps:
        raise ValueError(f"N={N} must be in [1, {diffusion.num_timesteps}] (the respaced steps)")
    if step_noise is not None and len(step_noise) != N:
        raise ValueError(f"step_noise has {len(step_noise)} tensors, need N={N}")
    if guidance_norm not in GUIDANCE_NORMS:
        raise ValueError(f"guidance_norm {guidance_norm!r}: use one of {GUIDANCE_NORMS}")
    B, _, H, W = ref.shape
    device = ref.device
    ref = ref.float()
    lowpass = LowPass(H, W, D, device) if lowpass is None else lowpass
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
                model, x, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs, noise=z, generator=generator
            )
            diff = ref_low - lowpass(out["pred_xstart"])  # (B, C, H, W)
            norm = guidance_norm_of(diff, guidance_norm)  # ()
            if scale != 0:
                (grad,) = torch.autograd.grad(norm, x)  # (B, C, H, W)
        sample = out["sample"].detach()  # (B, C, H, W)
        if scale != 0:
            sample = sample - scale * grad
        x = sample
        yield {"sample": sample, "pred_xstart": out["pred_xstart"].detach(), "norm": norm.detach()}


def project(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    ref: torch.Tensor,
    **kwargs: Any,
) -> torch.Tensor:
    """The projected images (B, C, H, W) of ``ref``; arguments as :func:`project_progressive`."""
    out = None
    for out in project_progressive(model, diffusion, ref, **kwargs):  # noqa: B007 - keep the last
        pass
    assert out is not None
    return out["sample"]


def project_reference_style(
    model: nn.Module, diffusion: Any, ref: torch.Tensor, N: int, D: int, scale: float, noises: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The reference's loop written out plainly (resize-right on ``ref`` and ``pred_xstart`` every step,
    batch-coupled norm, in-place update): the baseline of ``benchmarks/bench_align.py`` and the
    equivalence oracle of the tests. ``noises``: the q_sample draw, then one draw per step."""
    B = ref.shape[0]
    img = diffusion.q_sample(ref, torch.full((B,), N, device=ref.device), noise=noises[0])  # (B, C, H, W)
    for k, i in enumerate(range(N - 1, -1, -1)):
        img = img.requires_grad_()
        out = diffusion.p_sample(
            model, img, torch.full((B,), i, device=ref.device), clip_denoised=True, noise=noises[k + 1]
        )
        difference = lowpass_resize_right(ref, D) - lowpass_resize_right(out["pred_xstart"], D)
        norm = torch.linalg.norm(difference)
        norm_grad = torch.autograd.grad(outputs=norm, inputs=img)[0]
        out["sample"] -= norm_grad * scale
        img = out["sample"].detach_()
    return img


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 as the reference's ``torchvision.utils.save_image(normalize=True,
    range=(-1, 1))``: clamp to [-1, 1], (x + 1) / 2, * 255 + 0.5, clamp to [0, 255], truncate."""
    x = (x.float().clamp(-1, 1) + 1) / 2
    return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)
