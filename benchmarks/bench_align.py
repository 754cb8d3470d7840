"""Throughput of the align projection (images/s): this project's fast path vs a reference-style baseline.

Baseline, written like SDA's image_sample.py + p_sample_loop_progressive: float32 model with trainable
weights, naive einsum attention, resize-right called four times per step (the reference image too), the
batch-coupled norm. Fast path: sda.projection with precomputed low-pass matrices, SDPA attention,
frozen weights, optional channels_last / bf16 / fp16 / torch.compile. Both runs use the same noise, so
in fp32 the outputs must agree to float tolerance; the script prints the max difference.

    python benchmarks/bench_align.py                                   # small CPU config
    python benchmarks/bench_align.py --preset adm256 --batch_size 16 --precision fp16 --steps 5   # GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch

import sda.models.unet_blocks as unet_blocks
from sda.diffusion import create_diffusion, randn_like_gen
from sda.models.unet import ADM_FLAGS, create_model, model_kwargs
from sda.projection import LowPass, lowpass_resize_right, prepare_model, project
from sda.utils.seed import make_generator

PRESETS = {
    "small": dict(image_size=32, num_channels=64, num_res_blocks=2, channel_mult="1,2,2", attention_resolutions="16,8",
                  num_head_channels=32, learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True),
    # a light UNet on larger images: the reference's per-step resize-right and naive attention weigh more
    "light64": dict(image_size=64, num_channels=32, num_res_blocks=1, channel_mult="1,2,2,2",
                    attention_resolutions="32,16,8", num_head_channels=32, learn_sigma=True, resblock_updown=True,
                    use_scale_shift_norm=True),
    "adm256": {**model_kwargs(ADM_FLAGS["256_uncond"]), "use_fp16": False},
}


def _naive_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """guided-diffusion's attention: einsum, softmax in float32, (N, H, T, C) -> (N, T, H * C)."""
    n, heads, length, ch = q.shape
    s = 1 / ch ** 0.25
    w = torch.einsum("nhtc,nhsc->nhts", q * s, k * s)  # (N, H, T, T)
    w = torch.softmax(w.float(), dim=-1).type(w.dtype)
    a = torch.einsum("nhts,nhsc->nhtc", w, v)  # (N, H, T, C)
    return a.transpose(1, 2).reshape(n, length, heads * ch)


@contextlib.contextmanager
def naive_attention() -> Iterator[None]:
    saved = unet_blocks._sdpa_heads
    unet_blocks._sdpa_heads = _naive_heads
    try:
        yield
    finally:
        unet_blocks._sdpa_heads = saved


def baseline_project(model: torch.nn.Module, diffusion, ref: torch.Tensor, N: int, D: int, scale: float,
                     noises: list[torch.Tensor]) -> torch.Tensor:
    """The reference's loop: resize-right on ref and pred_xstart every step, in-place guided update."""
    B = ref.shape[0]
    img = diffusion.q_sample(ref, torch.full((B,), N, device=ref.device), noise=noises[0])
    for k, i in enumerate(range(N - 1, -1, -1)):
        img = img.requires_grad_()
        out = diffusion.p_sample(model, img, torch.full((B,), i, device=ref.device), clip_denoised=True,
                                 noise=noises[k + 1])
        difference = lowpass_resize_right(ref, D) - lowpass_resize_right(out["pred_xstart"], D)
        norm = torch.linalg.norm(difference)
        norm_grad = torch.autograd.grad(outputs=norm, inputs=img)[0]
        out["sample"] -= norm_grad * scale
        img = out["sample"].detach_()
    return img


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="guided steps timed (N); the full projection runs 50")
    p.add_argument("--timestep_respacing", default="100")
    p.add_argument("--D", type=int, default=4)
    p.add_argument("--scale", type=float, default=6.0)
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-baseline", dest="baseline", action="store_false")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    channels_last = args.channels_last
    flags = PRESETS[args.preset]
    S, B, N = flags["image_size"], args.batch_size, args.steps

    torch.manual_seed(0)
    base_model = create_model(**flags)
    with torch.no_grad():  # random weights with a non-zero output layer, so guidance has work to do
        for prm in base_model.parameters():
            prm.add_(0.02 * torch.randn_like(prm))
    state = {k: v.clone() for k, v in base_model.state_dict().items()}
    base_model = base_model.to(device).eval()
    fast_model = create_model(**flags)
    fast_model.load_state_dict(state)
    fast_model = prepare_model(fast_model.to(device), args.precision, channels_last=channels_last,
                               compile=args.compile)
    diffusion = create_diffusion(args.timestep_respacing)
    lpf = LowPass(S, S, args.D, device)

    gens = [make_generator(k) for k in range(B)]
    ref = (torch.rand(B, 3, S, S, generator=gens[0]) * 2 - 1).to(device)  # (B, 3, S, S)
    noises = [randn_like_gen(ref.shape, gens, device) for _ in range(N + 1)]

    def run_fast() -> torch.Tensor:
        return project(fast_model, diffusion, ref, N=N, D=args.D, scale=args.scale, noise=noises[0],
                       step_noise=noises[1:], lowpass=lpf)

    def run_base() -> torch.Tensor:
        with naive_attention():
            return baseline_project(base_model, diffusion, ref, N, args.D, args.scale, noises)

    print(f"align benchmark: preset {args.preset} ({S}px), batch {B}, {N} guided steps, D {args.D}, "
          f"{args.precision}, channels_last {channels_last}, compile {args.compile}, device {device}, "
          f"threads {torch.get_num_threads()}")
    t_fast, t_base = [], []
    out_fast = timed(run_fast, device)[1]  # warm-up (and compile)
    out_base = timed(run_base, device)[1] if args.baseline else None
    for _ in range(args.repeats):
        t, out_fast = timed(run_fast, device)
        t_fast.append(t)
        if args.baseline:
            t, out_base = timed(run_base, device)
            t_base.append(t)
    ips_fast = B * N / statistics.median(t_fast) / 50  # images/s for a full 50-step projection
    print(f"fast:     {statistics.median(t_fast) / N * 1000:8.1f} ms/step  {ips_fast:8.3f} images/s (N=50)")
    if args.baseline:
        ips_base = B * N / statistics.median(t_base) / 50
        diff = (out_fast.float() - out_base.float()).abs().max().item()
        print(f"baseline: {statistics.median(t_base) / N * 1000:8.1f} ms/step  {ips_base:8.3f} images/s (N=50)")
        print(f"speed-up: {ips_fast / ips_base:.2f}x   max |fast - baseline| = {diff:.2e}")


if __name__ == "__main__":
    main()
