"""Throughput of the align projection (images/s): this project's fast path vs a reference-style baseline.

Baseline, written like SDA's image_sample.py + p_sample_loop_progressive: float32 model with trainable
weights, naive einsum attention, resize-right called four times per step (the reference image too), the
batch-coupled norm. Fast path: sda.align.projection with precomputed low-pass matrices, SDPA attention,
frozen weights, optional channels_last / bf16 / fp16 / torch.compile. All rows use the same noise, so
in fp32 the outputs must agree to float tolerance; the table prints the max difference.

The baseline and every fast variant run interleaved in the same loop (repeated), so a busy machine
slows them alike; the header prints the threads and the load average before and after.

    python benchmarks/bench_align.py                                   # small CPU config, fp32 and bf16
    python benchmarks/bench_align.py --preset mini                      # the mini benchmark's projection
    python benchmarks/bench_align.py --preset adm256 --batch_size 16 --precision fp16,bf16 --steps 5   # GPU
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

import sda.models.unet_blocks as unet_blocks
from sda.align import AlignConfig, ProjectionConfig
from sda.align.lowpass import LowPass
from sda.align.projection import prepare_model, project, project_reference_style
from sda.diffusion import create_diffusion, randn_like_gen
from sda.models.adm_flags import ADM_FLAGS, create_model, model_kwargs
from sda.utils.options import add_options
from sda.utils.seed import make_generator

REPO = Path(__file__).resolve().parents[1]


def _mini_flags() -> dict:
    """The default mini benchmark's projector (sda/mini/configs/glyphs32/adm_uncond.json), model flags only."""
    from sda.mini.benchmarks import get_benchmark

    return model_kwargs(get_benchmark("glyphs32").adm_model_flags("uncond"))


PRESETS = {
    "small": dict(
        image_size=32,
        num_channels=64,
        num_res_blocks=2,
        channel_mult="1,2,2",
        attention_resolutions="16,8",
        num_head_channels=32,
        learn_sigma=True,
        resblock_updown=True,
        use_scale_shift_norm=True,
    ),
    # a light UNet on larger images: the reference's per-step resize-right and naive attention weigh more
    "light64": dict(
        image_size=64,
        num_channels=32,
        num_res_blocks=1,
        channel_mult="1,2,2,2",
        attention_resolutions="32,16,8",
        num_head_channels=32,
        learn_sigma=True,
        resblock_updown=True,
        use_scale_shift_norm=True,
    ),
    "adm256": {**model_kwargs(ADM_FLAGS["256_uncond"]), "use_fp16": False},
    "mini": None,  # read from sda/mini/configs/glyphs32/adm_uncond.json
}
# Per-preset defaults for --batch_size, --steps (N) and --timestep_respacing. The mini preset is the demo's
# projection in full (50 respaced steps, N=25, batches of 10), so its images/s is the demo's rate.
PRESET_DEFAULTS = {
    "small": dict(batch_size=8, steps=5, timestep_respacing="100"),
    "light64": dict(batch_size=8, steps=5, timestep_respacing="100"),
    "adm256": dict(batch_size=8, steps=5, timestep_respacing="100"),
    "mini": dict(batch_size=10, steps=25, timestep_respacing="50"),
}


def _naive_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """guided-diffusion's attention: einsum, softmax in float32, (N, H, T, C) -> (N, T, H * C)."""
    n, heads, length, ch = q.shape
    s = 1 / ch**0.25
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


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    # align's own flags (sda.align.config), with per-preset defaults for the batch and the respacing
    add_options(
        p, AlignConfig, only=("batch_size", "timestep_respacing"), defaults=dict.fromkeys(PRESET_DEFAULTS["mini"])
    )
    add_options(p, ProjectionConfig, only=("D", "scale"))
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="guided steps timed (N); default per preset (mini 25 = the demo's full projection, others 5)",
    )
    p.add_argument(
        "--full_steps",
        type=int,
        default=None,
        help="N of the full projection that images/s refers to (default: 25 for mini, 50 otherwise)",
    )
    p.add_argument(
        "--precision", default="fp32,bf16", help="comma list of fast-path precisions, one row each (fp32, fp16, bf16)"
    )
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile the fast model(s)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-baseline", dest="baseline", action="store_false")
    p.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="do not keep the fast rows' speed for align's cost plan (align/project.py --plan)",
    )
    args = p.parse_args(argv)
    for k, v in PRESET_DEFAULTS[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.full_steps = args.full_steps or (25 if args.preset == "mini" else 50)
    args.precisions = [x.strip() for x in args.precision.split(",") if x.strip()]
    if any(x not in ("fp32", "fp16", "bf16") for x in args.precisions):
        p.error(f"--precision {args.precision!r}: use a comma list of fp32, fp16, bf16")
    return args


def build_runs(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Callable[[], torch.Tensor]], dict]:
    """The rows to time (baseline first), all on the same weights, references and noise."""
    flags = _mini_flags() if args.preset == "mini" else PRESETS[args.preset]
    S, B, N = flags["image_size"], args.batch_size, args.steps
    torch.manual_seed(0)
    base_model = create_model(**flags)
    with torch.no_grad():  # random weights with a non-zero output layer, so guidance has work to do
        for prm in base_model.parameters():
            prm.add_(0.02 * torch.randn_like(prm))
    state = {k: v.clone() for k, v in base_model.state_dict().items()}
    base_model = base_model.to(device).eval()
    diffusion = create_diffusion(args.timestep_respacing)
    lpf = LowPass(S, S, args.D, device)
    gens = [make_generator(k) for k in range(B)]
    ref = (torch.rand(B, 3, S, S, generator=gens[0]) * 2 - 1).to(device)  # (B, 3, S, S)
    noises = [randn_like_gen(ref.shape, gens, device) for _ in range(N + 1)]
    cfg = ProjectionConfig(N=N, D=args.D, scale=args.scale)

    def run_base() -> torch.Tensor:
        with naive_attention():
            return project_reference_style(base_model, diffusion, ref, cfg, noises)

    runs: dict[str, Callable[[], torch.Tensor]] = {"baseline fp32": run_base} if args.baseline else {}
    for prec in args.precisions:
        m = create_model(**flags)
        m.load_state_dict(state)
        name = f"fast {prec}" + (" cl" if args.channels_last else "") + (" compiled" if args.compile else "")
        fast = prepare_model(m.to(device), prec, channels_last=args.channels_last, compile=args.compile)
        runs[name] = lambda m=fast: project(m, diffusion, ref, cfg, noise=noises[0], step_noise=noises[1:], lowpass=lpf)
    meta = {"S": S, "B": B, "N": N, "params": sum(x.numel() for x in base_model.parameters())}
    return runs, meta


def measure(runs: dict[str, Callable[[], torch.Tensor]], device: torch.device, repeats: int) -> tuple[dict, dict, dict]:
    """Warm-up (and compile) each row once, then ``repeats`` interleaved timed runs."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    warm, outs = {}, {}
    for k, fn in runs.items():
        warm[k], outs[k] = timed(fn, device)
    for _ in range(repeats):  # interleaved: a busy machine slows every row alike
        for k, fn in runs.items():
            t, outs[k] = timed(fn, device)
            times[k].append(t)
    return times, warm, outs


def report(args: argparse.Namespace, meta: dict, times: dict, warm: dict, outs: dict) -> None:
    B, N, full = meta["B"], meta["N"], args.full_steps
    ref_name = "baseline fp32" if args.baseline else None
    print(
        f"{'row':<28} {'warm-up s':>9} {'ms/step':>9} {'images/s':>10} {'x baseline':>11} {'(min-max)':>12} "
        f"{'max|diff|':>10}"
    )
    for k, ts in times.items():
        med = statistics.median(ts)
        ips = B * N / med / full  # images/s of a full N=`full` projection
        line = f"{k:<28} {warm[k]:9.1f} {med / N * 1000:9.1f} {ips:10.3f}"
        if ref_name:
            pair = [b / t for b, t in zip(times[ref_name], ts, strict=True)]  # per-repeat ratios, interleaved
            diff = (outs[k].float() - outs[ref_name].float()).abs().max().item()
            ratio = statistics.median(times[ref_name]) / med
            line += f" {ratio:10.2f}x {min(pair):5.2f}-{max(pair):<5.2f} {diff:10.2e}"
        print(line)
    print(
        f"images/s = batch * timed steps / time / {full} (a full N={full} projection); x baseline = ratio of "
        "median times, (min-max) = ratios within each interleaved repeat; warm-up includes torch.compile"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runs, meta = build_runs(args, device)
    print(
        f"align benchmark: preset {args.preset} ({meta['S']}px, {meta['params'] / 1e6:.2f}M "
        f"params), batch {meta['B']}, {meta['N']} guided steps of respacing {args.timestep_respacing}, D {args.D}, "
        f"device {device} ({_cpu_name() if device.type == 'cpu' else torch.cuda.get_device_name(device)}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}"
    )
    print(f"load average before: {_loadavg()}")
    times, warm, outs = measure(runs, device, args.repeats)
    print(f"load average after:  {_loadavg()}")
    report(args, meta, times, warm, outs)
    if args.record:
        record_speed(args, meta, times, device)


def record_speed(args: argparse.Namespace, meta: dict, times: dict, device: torch.device) -> None:
    """Keep each fast row's seconds per image and guided step for ``align/project.py --plan``."""
    from sda.utils import throughput

    rows = {k: ts for k, ts in times.items() if k.startswith("fast")}
    if args.compile or not rows:
        return  # the plan estimates align's default (uncompiled) path
    for k, ts in rows.items():
        kind = throughput.StepKind(throughput.device_name(device), meta["S"], meta["params"], k.split()[1], grad=True)
        per_step = statistics.median(ts) / (meta["B"] * meta["N"])
        throughput.record(kind, per_step, meta["B"], note=f"bench_align --preset {args.preset}")
    print(f"speed recorded for align/project.py --plan in {throughput.path()}")


if __name__ == "__main__":
    main()
