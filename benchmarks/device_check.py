"""One prepared check of every CUDA path, for the rare lent GPU: a row at a time, kept as it goes.

    bash benchmarks/device_run.sh                                       # on the lent machine (README, "GPU check")
    python benchmarks/device_check.py --out device_check.json           # one GPU, within --budget seconds
    python benchmarks/device_check.py --sections compile                # a rerun of the rows a first run skipped
    python benchmarks/device_check.py --plan                            # the plan alone (rows, estimates, memory)
    python benchmarks/device_check.py --smoke --out /tmp/smoke.json     # the same code paths on a CPU, tiny

Randomly initialised official architectures and synthetic inputs; nothing is downloaded. Runs from its own
checkout without an install (it puts the checkout first on ``sys.path``, and on ``PYTHONPATH`` for its
torchrun children).

The plan is printed first: every row with its estimated seconds (and, for the projection, its estimated
peak memory). Rows run in order of importance and each is printed as a flushed ``ROW {json}`` line and
written to the JSON report at once (atomically), so a run cut short keeps every row it finished. A row
starts only if its estimate fits in what is left of ``--budget``; one that overruns twice its estimate is
stopped and reported as such. Order:

1. projection at 256 px with the released unconditional ADM's flags (552M parameters, one model built once
   on the device and reloaded from a device copy of its weights for every row): the reference-style
   baseline (fp32, einsum attention, resize-right every step) and the fast path in fp32 / fp16 (the
   reference's convert_to_fp16) / bf16 autocast, at batches that fit 80 GB; images/s, the ratio to the
   baseline at the same batch, the pixel deviation from fp32 on the same images and noise (max, mean,
   99th percentile; per-image guidance norm, so a larger batch's first images are comparable), peak memory
   and activation memory per image (the batch guide);
2. DiT-XL/2 sampling with a random AutoencoderKL of the sd-vae layout: fp32 (TF32, as gen), bf16, fp16;
3. one AMP fine-tuning iteration and one AMP eval batch of ResNet-50 at the paper's batch per GPU (halved
   until it fits, stated);
4. ``torchrun --nproc_per_node 1`` (a real NCCL process group) through gen, align, eval and
   ``finetune/train.py --amp`` on tiny models, checking that every output exists exactly once;
5. the other four recipes' fine-tuning and eval rows;
6. torch.compile rows (``default``, ``reduce-overhead`` = CUDA graphs), last: each needs a cold compile.

``--smoke`` runs the same functions on a CPU with tiny models (compile rows and AMP are CUDA-only and are
listed as skipped); it is part of the test suite, so the check cannot rot.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout's sda (installed or not), bench_align

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

RECIPES = ("ResNet50", "SwinT", "ConvNeXtT", "SwinB", "ConvNeXtB")
PAPER_BATCH = {"ResNet50": 64, "SwinT": 128, "ConvNeXtT": 128, "SwinB": 128, "ConvNeXtB": 128}
_TINY_SWIN = {"_delete_": True, "embed_dims": 32, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8]}
# --smoke: the recipes' smallest relatives (same classes, optimisers, pipelines; minutes less on a CPU)
SHRINK = {
    "ResNet50": {
        "model.backbone.depth": 18,
        "model.neck": {"type": "GlobalAveragePooling"},
        "model.head.in_channels": 512,
    },
    "SwinT": {"model.backbone.arch": _TINY_SWIN, "model.head.in_channels": 256},
    "SwinB": {"model.backbone.arch": _TINY_SWIN, "model.head.in_channels": 256},
    "ConvNeXtT": {"model.backbone.arch": "atto", "model.head.in_channels": 320},
    "ConvNeXtB": {"model.backbone.arch": "atto", "model.head.in_channels": 320},
}
# Saved activations of one guided step of the 256 px UNet per image (GiB), measured on a CPU and on the meta
# device for the released flags: what bounds the projection's batch on one card.
ACTIVATION_GIB = {"fp32": 4.6, "fp16": 3.4, "bf16": 3.4}
ADM256_WEIGHTS_GIB = 552_814_086 * 4 / 2**30  # the fp32 model and its device copy are resident: 2 x 2.06 GiB

SECTIONS = ("projection", "dit", "finetune", "eval", "torchrun", "compile")


@dataclass(frozen=True)
class Settings:
    """What one mode measures, and the seconds each kind of row is expected to take (the plan's estimates)."""

    adm: str  # a bench_align preset
    eager: tuple[tuple[str, int], ...]  # (precision, batch), in order of importance
    baseline_batch: int
    compile: tuple[tuple[str, str], ...]  # (precision, mode), at baseline_batch
    steps: int
    respacing: str
    dit: str
    dit_size: int
    dit_batch: int
    dit_steps: int
    tiny_vae: bool
    train_batch: dict[str, int]
    eval_batch: int
    shrink: bool
    est_s: dict[str, float]
    torchrun_timeout_s: float
    memory_gib: float | None = None  # the card's memory for the plan's fit check (None: no check, CPU)


FULL = Settings(
    adm="adm256",
    eager=(("fp32", 8), ("fp16", 8), ("bf16", 8), ("fp16", 16), ("bf16", 16), ("fp32", 4)),
    baseline_batch=8,
    compile=tuple((p, m) for p in ("bf16", "fp16", "fp32") for m in ("default", "reduce-overhead")),
    steps=3,
    respacing="100",
    dit="DiT-XL/2",
    dit_size=256,
    dit_batch=32,
    dit_steps=5,
    tiny_vae=False,
    train_batch=PAPER_BATCH,
    eval_batch=64,
    shrink=False,
    # guesses for an H100 from FLOP counts and a review of the check (no GPU has run it yet); the rows
    # report their real seconds, which replace these in the README once measured
    est_s={"baseline": 25, "eager": 12, "dit": 60, "finetune": 15, "eval": 8, "torchrun": 35, "compile": 100},
    torchrun_timeout_s=120,
    memory_gib=80.0,
)
SMOKE = Settings(
    adm="small",
    eager=(("fp32", 2), ("fp16", 2), ("bf16", 2), ("fp16", 4), ("bf16", 4)),
    baseline_batch=2,
    compile=(),
    steps=2,
    respacing="10",
    dit="DiT-S/8",
    dit_size=64,
    dit_batch=2,
    dit_steps=2,
    tiny_vae=True,
    train_batch=dict.fromkeys(RECIPES, 2),
    eval_batch=2,
    shrink=True,
    est_s={"baseline": 5, "eager": 5, "dit": 10, "finetune": 15, "eval": 5, "torchrun": 40, "compile": 0},
    torchrun_timeout_s=300,
)


# ----------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float | None]]:
    """Peak allocated GiB of the block and what was allocated before it (CUDA; None elsewhere)."""
    box: dict[str, float | None] = {}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    yield box
    if device.type == "cuda":
        box["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        box["resident_gib"] = round(before / 2**30, 2)
    else:
        box["peak_gib"] = None


def release(device: torch.device) -> None:
    """Give back what a section held: compiled graphs, CUDA-graph pools, cached blocks."""
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class RowTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`RowTimeout` in this (main) thread after ``seconds`` (checked when Python runs again)."""

    def stop(_signum: int, _frame: Any) -> None:
        raise RowTimeout(f"stopped after {seconds:.0f} s (twice its estimate, or the budget)")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def pixel_deviation(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """uint8 images (B, C, H, W): max, mean and 99th percentile of |a - b| in pixel levels."""
    d = (a.int() - b.int()).abs().float()
    return {
        "max_pixel_dev_vs_fp32": int(d.max()),
        "mean_pixel_dev_vs_fp32": round(float(d.mean()), 3),
        "p99_pixel_dev_vs_fp32": float(d.flatten().kthvalue(max(1, int(0.99 * d.numel()))).values),
    }


def machine(device: torch.device) -> dict[str, Any]:
    import importlib.metadata as md

    import sda

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    info.update(cuda=torch.version.cuda, sda_path=str(Path(sda.__file__).resolve().parent))
    for name in ("diffusers", "mmengine", "mmcv-lite", "mmpretrain", "resize-right", "setuptools"):
        with contextlib.suppress(md.PackageNotFoundError):
            info[name] = md.version(name)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            q = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(q, capture_output=True, text=True, timeout=20).stdout.strip()
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info.update(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


# ----------------------------------------------------------------------------- 1. projection
class ProjectionBench:
    """The guided projection on one set of random weights, references and noise, in several setups.

    One UNet lives on the device with a device copy of its fp32 weights; every row reloads them, so no row
    pays a model build and fp16's in-place conversion never leaks into the next row."""

    def __init__(self, s: Settings, device: torch.device):
        from bench_align import PRESETS

        from sda.align import ProjectionConfig
        from sda.diffusion import create_diffusion
        from sda.models.adm_flags import create_model

        self.flags, self.device, self.n = {**PRESETS[s.adm], "use_fp16": False}, device, s.steps
        torch.manual_seed(0)
        model = create_model(**self.flags)
        with torch.no_grad():  # non-zero output layers, so the guidance has work to do
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        self.model = model.to(device)
        self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.diffusion = create_diffusion(s.respacing)
        self.reference_cfg = ProjectionConfig(N=self.n, D=4, scale=6.0)  # the reference's batch norm
        # per-image norm: an image's result does not depend on its batch, so every row compares with fp32
        self.cfg = dataclasses.replace(self.reference_cfg, guidance_norm="sample")
        self.reference: torch.Tensor | None = None  # fp32 pixels of the first images
        self.baseline_ips: dict[int, float] = {}

    def inputs(self, b: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """References and noise per image from that image's own generator: the first k images are the same
        whatever the batch."""
        from sda.diffusion import randn_like_gen
        from sda.utils.seed import make_generator

        size = self.flags["image_size"]
        gens = [make_generator(k) for k in range(b)]
        ref = torch.cat([torch.rand(1, 3, size, size, generator=g) * 2 - 1 for g in gens]).to(self.device)
        return ref, [randn_like_gen(ref.shape, gens, self.device) for _ in range(self.n + 1)]  # (B, 3, S, S)

    def fresh(self, precision: str, compile_mode: str | None = None) -> torch.nn.Module:
        from sda.align.projection import prepare_model

        self.model.convert_to_fp32()  # back from a previous fp16 row before the fp32 weights load
        self.model.load_state_dict(self.state)
        mode = compile_mode or "default"
        return prepare_model(self.model, precision, True, compile=compile_mode is not None, compile_mode=mode)

    def baseline(self, b: int) -> dict:
        from bench_align import naive_attention

        from sda.align.projection import project_reference_style

        ref, noises = self.inputs(b)
        self.model.convert_to_fp32()
        self.model.load_state_dict(self.state)
        model = self.model.to(memory_format=torch.contiguous_format).eval().requires_grad_(True)

        def run() -> torch.Tensor:
            with naive_attention():
                return project_reference_style(model, self.diffusion, ref, self.reference_cfg, noises)

        r = self.measure("baseline fp32 (reference-style)", b, run, compare=False)
        self.baseline_ips[b] = r["images_per_s_full_N50"]
        return r

    def fast(self, precision: str, b: int, compile_mode: str | None = None) -> dict:
        from sda.align.lowpass import LowPass
        from sda.align.projection import project

        ref, noises = self.inputs(b)
        model, lpf = self.fresh(precision, compile_mode), LowPass(ref.shape[-2], ref.shape[-1], 4, self.device)

        def run() -> torch.Tensor:
            return project(model, self.diffusion, ref, self.cfg, noise=noises[0], step_noise=noises[1:], lowpass=lpf)

        name = f"{precision} channels_last" + (f" compile={compile_mode}" if compile_mode else "")
        return self.measure(name, b, run, compare=True, reference=precision == "fp32" and compile_mode is None)

    def measure(self, name: str, b: int, fn: Callable, compare: bool, reference: bool = False) -> dict:
        from sda.utils.images import to_uint8

        with peak_memory(self.device) as mem:
            warm, _ = timed(fn, self.device)  # warm-up (compilation, cuDNN's algorithm search)
            t, out = timed(fn, self.device)
        px = to_uint8(out.float().cpu(), "adm")  # (B, 3, S, S)
        r: dict[str, Any] = {"section": "projection", "name": name, "batch": b, "steps_timed": self.n}
        r.update(warmup_s=round(warm, 2), s_per_step=round(t / self.n, 4))
        r.update(images_per_s_full_N50=round(b * self.n / t / 50, 3), **mem)
        if mem["peak_gib"] is not None:
            r["activation_gib_per_image"] = round((mem["peak_gib"] - mem["resident_gib"]) / b, 2)
        if b in self.baseline_ips:
            r["x_baseline"] = round(r["images_per_s_full_N50"] / self.baseline_ips[b], 2)
        if reference and (self.reference is None or len(self.reference) < b):
            self.reference = px
        if compare and self.reference is not None:
            k = min(b, len(self.reference))
            r.update(compared_images=k, **pixel_deviation(px[:k], self.reference[:k]))
        return r


# ----------------------------------------------------------------------------- 2. DiT + VAE
class DitBench:
    """DiT sampling with VAE decoding; the model and VAE are built once and shared by the precisions (the
    sampler autocasts; it never changes the weights)."""

    def __init__(self, s: Settings, device: torch.device):
        from diffusers.models import AutoencoderKL

        from sda.gen.models import SD_VAE_CONFIG
        from sda.models.dit import build_dit
        from sda.testing import TINY_VAE

        torch.manual_seed(0)
        self.s, self.device, self.latent = s, device, s.dit_size // 8
        self.dit = build_dit(s.dit, input_size=self.latent, in_channels=4, num_classes=1000).eval().to(device)
        self.vae = AutoencoderKL(**(TINY_VAE if s.tiny_vae else SD_VAE_CONFIG)).eval().to(device)
        self.reference: torch.Tensor | None = None

    def row(self, precision: str) -> dict:
        from sda.diffusion import create_diffusion
        from sda.gen.config import GenConfig
        from sda.gen.sampler import Sampler

        s, b = self.s, self.s.dit_batch
        torch.backends.cuda.matmul.allow_tf32 = GenConfig.tf32  # as gen's runner
        sampler = Sampler(
            model=self.dit,
            diffusion=create_diffusion(str(s.dit_steps)),
            input_size=self.latent,
            in_channels=4,
            num_classes=1000,
            device=self.device,
            vae=self.vae,
            precision=precision,
        )
        draw = partial(sampler.sample, [k % 1000 for k in range(b)], list(range(b)))
        with peak_memory(self.device) as mem, torch.no_grad():
            warm, _ = timed(draw, self.device)
            t, images = timed(draw, self.device)
        r = {"section": "dit", "name": f"{s.dit} + VAE {precision}", "batch": b, "steps_timed": s.dit_steps}
        r.update(s_per_batch=round(t, 3), images_per_s_250_steps=round(b * s.dit_steps / t / 250, 3), **mem)
        self.reference = images if self.reference is None else self.reference
        r.update(pixel_deviation(images, self.reference))
        return r


# ----------------------------------------------------------------------------- 3. fine-tuning and eval
def _batch(n: int, size: int) -> dict:
    from mmpretrain.structures import DataSample

    inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(n)]
    samples = [DataSample().set_gt_label(k % 1000) for k in range(n)]
    return {"inputs": inputs, "data_samples": samples}


def finetune_row(name: str, s: Settings, device: torch.device) -> dict:
    """One training iteration of a recipe (AMP on CUDA), at the paper's batch, halved until it fits."""
    import logging

    from mmengine.optim import build_optim_wrapper

    from sda.finetune.classifiers import build_classifier, load_config

    logging.getLogger("mmengine").setLevel(logging.WARNING)  # no line per parameter group
    cfg = load_config(ROOT / "configs" / "finetune" / f"{name}.py", SHRINK[name] if s.shrink else None)
    amp = device.type == "cuda"
    if amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    model = build_classifier(cfg).to(device).train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = s.train_batch[name]
    while True:
        try:
            step = partial(model.train_step, _batch(batch, 224), wrapper)
            with peak_memory(device) as mem:
                timed(step, device)  # warm-up
                t, losses = timed(step, device)
            break
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2
            release(device)
    loss = float(sum(v.detach() for k, v in losses.items() if "loss" in k))
    return {
        "section": "finetune",
        "name": f"{name} train step" + (" amp" if amp else ""),
        "batch": batch,
        "paper_batch": s.train_batch[name],
        "s_per_iter": round(t, 3),
        "images_per_s": round(batch / t, 1),
        "loss_finite": bool(torch.isfinite(torch.tensor(loss))),
        **mem,
    }


def eval_row(name: str, s: Settings, device: torch.device) -> dict:
    """One evaluation batch of an eval config under autocast (fp16 on CUDA, as --amp)."""
    from sda.finetune.classifiers import Normalizer, build_classifier_from_config, load_config
    from sda.utils.precision import amp_precision, autocast

    cfg = load_config(ROOT / "configs" / "eval" / f"{name}.py", SHRINK[name] if s.shrink else None)
    model = build_classifier_from_config(cfg, device=device)
    prec = amp_precision(device)
    x = Normalizer.from_config(cfg)(torch.randint(0, 256, (s.eval_batch, 3, 224, 224)).to(device))
    with peak_memory(device) as mem, torch.no_grad(), autocast(prec, device.type):
        timed(lambda: model(x, mode="tensor"), device)  # warm-up
        t, logits = timed(lambda: model(x, mode="tensor"), device)
    return {
        "section": "eval",
        "name": f"{name} eval batch {prec}",
        "batch": s.eval_batch,
        "s_per_batch": round(t, 3),
        "images_per_s": round(s.eval_batch / t, 1),
        "finite": bool(torch.isfinite(logits.float()).all()),
        **mem,
    }


# ----------------------------------------------------------------------------- 4. torchrun through the stages
class TorchrunBench:
    """gen, align, eval and finetune under ``torchrun --nproc_per_node 1`` on tiny models and images: one
    process, but a real process group (NCCL on CUDA, gloo on a CPU), as on many GPUs."""

    def __init__(self, s: Settings, device: torch.device):
        from sda.finetune.classifiers import build_classifier_from_config
        from sda.testing import make_layout, tiny_dit, tiny_unet, write_images

        self.dev = "cuda" if device.type == "cuda" else "cpu"
        self.timeout = s.torchrun_timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="sda-device-check-")
        t = self.t = Path(self._tmp.name)
        torch.save(tiny_unet().state_dict(), t / "adm.pt")
        tiny_dit(t / "dit.pt")
        make_layout(t / "C", "C", corruptions=("fog",), per_class=3)
        for k in range(2):  # a class-folder set for the fine-tune step
            write_images(t / "train" / f"{k:04d}", [f"{i:06d}.png" for i in range(8)], seed=k, size=(32, 32))
        cfg = ROOT / "configs" / "finetune" / "TinyResNet.py"
        two = {"model.head.num_classes": 2}
        torch.save({"state_dict": build_classifier_from_config(cfg, cfg_options=two).state_dict()}, t / "cls.pth")
        path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.env = {
            **os.environ,
            "PYTHONPATH": path,  # this checkout's sda in the children too, installed or not
            "OMP_NUM_THREADS": "1",
            "SDA_NO_PROGRESS": "1",
            "PYTHONWARNINGS": "ignore",
        }
        self.launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]

    def close(self) -> None:
        self._tmp.cleanup()

    def commands(self) -> dict[str, list[str]]:
        """Each stage's command, generated from its typed config (as the mini benchmark drives the stages)."""
        from sda.align.config import AlignConfig, ProjectionConfig
        from sda.eval.config import EvalConfig
        from sda.finetune.config import FinetuneConfig
        from sda.gen.config import GenConfig
        from sda.models.adm_flags import complete_flags
        from sda.testing import TINY_ADM

        t, dev = self.t, self.dev
        gen = GenConfig(model="DiT-d2w64h2/4", no_vae=True, image_size=16, num_classes=10, ckpt=str(t / "dit.pt"))
        gen = dataclasses.replace(
            gen, num_sampling_steps=4, classes="0-2", images_per_class=3, out_dir=str(t / "gen"), device=dev
        )
        flags = complete_flags({**TINY_ADM, "class_cond": False})
        align = AlignConfig(
            base_samples=t / "C", datatype="C", save_dir=t / "out", image_size=flags["image_size"],
            projection=ProjectionConfig(N=2), corruptions="fog", batch_size=4, timestep_respacing="4",
            model_path=str(t / "adm.pt"), model_flags=flags, device=dev,
        )  # fmt: skip
        cfg, two = str(ROOT / "configs" / "finetune" / "TinyResNet.py"), {"model.head.num_classes": 2}
        evaluate = EvalConfig(
            config=cfg, checkpoint=str(t / "cls.pth"), originckpt=str(t / "cls.pth"), corruptions="fog",
            data_prefix1=str(t / "C"), data_prefix2=str(t / "out" / "ImageNet-C-Syn"), device=dev, num_workers=0,
            launcher="pytorch", out=str(t / "eval.json"), cfg_options=two,
        )  # fmt: skip
        finetune = FinetuneConfig(
            config=cfg, launcher="pytorch", data_root=str(t / "train"), work_dir=str(t / "work"),
            final_ckpt=str(t / "ft.pth"), amp=dev == "cuda",
            cfg_options={"load_from": None, **two, "train_cfg.max_epochs": 1, "train_dataloader.batch_size": 8},
        )  # fmt: skip
        cmds = {"gen/sample.py": gen, "align/project.py": align, "eval/evaluate.py": evaluate}
        cmds["finetune/train.py"] = finetune
        return {k.split("/")[0]: [*self.launch, str(ROOT / k), *c.to_argv()] for k, c in cmds.items()}

    def outputs(self, name: str) -> tuple[int, int]:
        """(outputs found, outputs expected), each counted once by its relative path."""
        t = self.t
        if name == "eval":
            return (json.loads((t / "eval.json").read_text())["images"] if (t / "eval.json").is_file() else 0), 6
        if name == "finetune":
            return int((t / "ft.pth").is_file()), 1
        root, n = {"gen": (t / "gen", 9), "align": (t / "out" / "ImageNet-C-Syn", 6)}[name]
        files = [p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpeg")] if root.exists() else []
        names = {str(p.relative_to(root)) for p in files}
        return (len(names) if len(names) == len(files) else -len(files)), n

    def row(self, name: str, limit_s: float) -> dict:
        cmd, t0 = self.commands()[name], time.time()
        r: dict[str, Any] = {"section": "torchrun", "name": f"{name} (torchrun, 1 process, {self.dev})"}
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.t,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=min(self.timeout, limit_s))
            r["rc"] = proc.returncode
            if proc.returncode:
                r["error"] = _error_line(err)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            r.update(rc=None, error=f"timeout after {min(self.timeout, limit_s):.0f} s")
        found, expected = self.outputs(name)
        r.update(outputs=found, expected=expected, exactly_once=found == expected, seconds=round(time.time() - t0, 1))
        return r


def _error_line(stderr: str) -> str:
    """The worker's one-line error (``error: ...``) out of torchrun's report, else the tail."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ") or "Error" in line]
    return (errors[0] if errors else stderr[-300:])[:300]


# ----------------------------------------------------------------------------- the plan
@dataclass
class Row:
    section: str
    name: str
    est_s: float
    run: Callable[[float], dict | list[dict]]  # (seconds it may take) -> row(s)
    est_peak_gib: float | None = None


class Check:
    """The rows of one run, in order, over lazily built benches that are released between sections."""

    def __init__(self, s: Settings, device: torch.device):
        self.s, self.device = s, device
        self.benches: dict[str, Any] = {}

    def bench(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.benches:
            self.close()  # one section's models on the card at a time
            self.benches[key] = make()
        return self.benches[key]

    def close(self) -> None:
        for b in self.benches.values():
            if hasattr(b, "close"):
                b.close()
        self.benches.clear()
        release(self.device)

    def proj(self) -> ProjectionBench:
        from sda.align.runner import use_align_backend

        use_align_backend()  # cuDNN and TF32 as align/project.py runs
        return self.bench("projection", lambda: ProjectionBench(self.s, self.device))

    # each row's work, given the seconds it may take
    def baseline(self, _limit: float) -> dict:
        return self.proj().baseline(self.s.baseline_batch)

    def fast(self, precision: str, b: int, mode: str | None, _limit: float) -> dict:
        return self.proj().fast(precision, b, mode)

    def dit(self, precision: str, _limit: float) -> dict:
        return self.bench("dit", lambda: DitBench(self.s, self.device)).row(precision)

    def finetune(self, recipe: str, _limit: float) -> dict:
        return finetune_row(recipe, self.s, self.device)

    def eval(self, recipe: str, _limit: float) -> dict:
        return eval_row(recipe, self.s, self.device)

    def torchrun(self, stage: str, limit: float) -> dict:
        return self.bench("torchrun", lambda: TorchrunBench(self.s, self.device)).row(stage, limit)

    def rows(self, sections: tuple[str, ...] = SECTIONS) -> list[Row]:
        """Every row of ``sections``, most important first (see the module's docstring)."""
        s, est, b0 = self.s, self.s.est_s, self.s.baseline_batch

        def peak(precision: str, b: int) -> float | None:
            return round(2 * ADM256_WEIGHTS_GIB + ACTIVATION_GIB[precision] * b, 1) if s.adm == "adm256" else None

        def recipes(names: tuple[str, ...]) -> list[Row]:
            out = []
            for n in names:
                out.append(Row("finetune", f"{n} train step", est["finetune"], partial(self.finetune, n)))
                out.append(Row("eval", f"{n} eval batch", est["eval"], partial(self.eval, n)))
            return out

        rows = [Row("projection", f"baseline fp32 b{b0}", est["baseline"], self.baseline, peak("fp32", b0))]
        rows += [
            Row("projection", f"{p} b{b}", est["eager"], partial(self.fast, p, b, None), peak(p, b)) for p, b in s.eager
        ]
        rows += [Row("dit", f"{s.dit} {p}", est["dit"] / 3, partial(self.dit, p)) for p in ("fp32", "bf16", "fp16")]
        rows += recipes(RECIPES[:1])
        rows += [
            Row("torchrun", n, est["torchrun"], partial(self.torchrun, n)) for n in ("gen", "align", "eval", "finetune")
        ]
        rows += recipes(RECIPES[1:])
        for p, mode in s.compile:
            run = partial(self.fast, p, b0, mode)
            rows.append(Row("compile", f"{p} b{b0} compile={mode}", est["compile"], run, peak(p, b0)))
        return [r for r in rows if r.section in sections]


def plan_summary(rows: list[Row], budget_s: float, memory_gib: float | None) -> dict[str, Any]:
    """The plan as data: each row's estimate, the total without the compile rows against the budget, and the
    projection rows' estimated peaks against the card (90% of it, the batch guide's margin)."""
    essential = sum(r.est_s for r in rows if r.section != "compile")
    over = [r.name for r in rows if memory_gib and r.est_peak_gib and r.est_peak_gib > 0.9 * memory_gib]
    return {
        "budget_s": budget_s,
        "estimated_s_without_compile": round(essential, 1),
        "estimated_s_total": round(sum(r.est_s for r in rows), 1),
        "fits_budget": essential <= budget_s,
        "memory_gib": memory_gib,
        "over_memory": over,
        "rows": [
            {"section": r.section, "name": r.name, "est_s": r.est_s, "est_peak_gib": r.est_peak_gib} for r in rows
        ],
    }


def print_plan(plan: dict[str, Any]) -> None:
    print(
        f"[device check] plan: {len(plan['rows'])} rows; without compile {plan['estimated_s_without_compile']} s of",
        end="",
    )
    print(f" a {plan['budget_s']:.0f} s budget ({'fits' if plan['fits_budget'] else 'DOES NOT FIT'})", flush=True)
    for r in plan["rows"]:
        mem = f", ~{r['est_peak_gib']} GiB" if r["est_peak_gib"] else ""
        print(f"  {r['section']:<10} {r['name']:<36} ~{r['est_s']:.0f} s{mem}", flush=True)
    if plan["over_memory"]:
        print(f"  over 90% of {plan['memory_gib']} GiB (will be tried, may fail): {plan['over_memory']}", flush=True)


# ----------------------------------------------------------------------------- the report and the loop
class Report:
    """The JSON report, rewritten (atomically) after every row, and one flushed ``ROW`` line per row."""

    def __init__(self, path: Path, head: dict[str, Any]):
        self.path, self.data = path, {**head, "rows": [], "complete": False}
        self.flush()

    def add(self, row: dict[str, Any]) -> None:
        self.data["rows"].append(row)
        print("ROW " + json.dumps(row), flush=True)
        self.flush()

    def flush(self) -> None:
        from sda.utils.io import write_json

        write_json(self.path, self.data)


def run_rows(rows: list[Row], report: Report, budget_s: float) -> None:
    """Each row if its estimate fits what is left of the budget; a row that overruns is stopped."""
    t0 = time.monotonic()
    for row in rows:
        left = budget_s - (time.monotonic() - t0)
        if row.est_s > left:
            why = f"skipped: ~{row.est_s:.0f} s estimated, {max(left, 0):.0f} s of the {budget_s:.0f} s budget left"
            report.add({"section": row.section, "name": row.name, "skipped": why})
            continue
        limit = min(max(2 * row.est_s, row.est_s + 60), left + 60)
        print(f"[device check] {row.section}: {row.name} (~{row.est_s:.0f} s, {left:.0f} s left)", flush=True)
        t = time.monotonic()
        try:
            with deadline(limit):
                out = row.run(limit)
            results = out if isinstance(out, list) else [out]
        except Exception as e:  # noqa: BLE001 - a device check reports every failure and goes on
            traceback.print_exc()
            results = [{"section": row.section, "name": row.name, "error": f"{type(e).__name__}: {e}"[:300]}]
            with contextlib.suppress(Exception):
                release(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        for r in results:
            r.setdefault("seconds", round(time.monotonic() - t, 1))
            report.add(r)


def table(report: dict[str, Any]) -> str:
    keys = [
        "section",
        "name",
        "batch",
        "images_per_s_full_N50",
        "images_per_s_250_steps",
        "images_per_s",
        "x_baseline",
        "max_pixel_dev_vs_fp32",
        "mean_pixel_dev_vs_fp32",
        "peak_gib",
        "activation_gib_per_image",
        "s_per_step",
        "exactly_once",
        "seconds",
        "error",
        "skipped",
    ]
    present = [k for k in keys if any(k in r for r in report["rows"])]
    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    for r in report["rows"]:
        lines.append("| " + " | ".join(str(r.get(k, "")) for k in present) + " |")
    m = report["machine"]
    head = f"device check ({report['mode']}): {m.get('gpu') or m.get('cpu')}, torch {m['torch']}, CUDA {m['cuda']}"
    return head + f", {report.get('seconds')} s\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny models on a CPU: the same code paths")
    default_out = Path(os.environ["OUT"]) / "device_check.json" if os.environ.get("OUT") else Path("device_check.json")
    p.add_argument("--out", type=Path, default=default_out, help="the JSON report (default $OUT/device_check.json)")
    p.add_argument("--budget", type=float, default=None, help="seconds for all rows (default 420; --smoke 1500)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--plan", action="store_true", help="print the plan as JSON and exit (no device needed)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = tuple(x for x in args.sections.split(",") if x)
    unknown = [x for x in sections if x not in SECTIONS]
    if unknown:
        print(f"error: --sections {','.join(unknown)}: use some of {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    s = SMOKE if args.smoke else FULL
    budget = args.budget if args.budget is not None else (1500.0 if args.smoke else 420.0)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    check = Check(s, device)
    rows = check.rows(sections)
    plan = plan_summary(rows, budget, s.memory_gib if device.type == "cuda" or args.plan else None)
    if args.plan:
        print(json.dumps(plan, indent=2))
        return 0
    if not args.smoke and device.type != "cuda":
        print("error: no CUDA GPU is visible; run with --smoke to check the code paths on a CPU", file=sys.stderr)
        return 2
    print_plan(plan)
    t0 = time.time()
    report = Report(args.out, {"machine": machine(device), "mode": "smoke" if args.smoke else "full", "plan": plan})
    try:
        run_rows(rows, report, budget)
    finally:
        check.close()
    if args.smoke:
        report.add({"section": "compile", "name": "torch.compile rows", "skipped": "CUDA only (minutes on a CPU)"})
    report.data.update(complete=True, seconds=round(time.time() - t0, 1))
    report.flush()
    print(table(report.data))
    print(f"wrote {args.out}")
    failed = [r for r in report.data["rows"] if r.get("error") or r.get("rc") or r.get("exactly_once") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
