"""One prepared check of every CUDA path, for the rare lent GPU: a table on stdout and a JSON file.

    python benchmarks/device_check.py --out device_check.json            # one GPU, at most ~8 minutes
    python benchmarks/device_check.py --smoke --out /tmp/smoke.json      # the same code paths on a CPU, tiny

Randomly initialised official architectures and synthetic inputs; nothing is downloaded.

1. projection at 256 px with the released unconditional ADM's flags (552M parameters): images/s for fp32,
   fp16 (the reference's convert_to_fp16), bf16 autocast, with and without torch.compile, at several batch
   sizes, against the reference-style baseline (fp32, einsum attention, resize-right every step) in the
   same run; the largest pixel deviation of each half-precision row from fp32 on the same injected noise;
   peak memory;
2. DiT-XL/2 sampling with a random AutoencoderKL of the sd-vae layout: images/s for fp32 (TF32), bf16 and
   fp16, and the deviation from fp32;
3. one AMP fine-tuning iteration of each of the five recipes and one AMP eval batch of each eval config,
   at the paper's batch per GPU (halved until it fits, stated);
4. ``torchrun --nproc_per_node 1`` (NCCL) through gen, align and eval on a handful of images, checking
   that every output exists exactly once;
5. the machine: GPU name and memory, driver, torch and CUDA versions.

``--smoke`` runs the same functions on a CPU with tiny models (torch.compile rows and AMP are CUDA-only and
are listed as skipped); it is part of the test suite, so the check cannot rot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark (its baseline pieces)
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' tiny models (--smoke)
from bench_align import PRESETS as ALIGN_PRESETS  # noqa: E402
from bench_align import naive_attention  # noqa: E402
from tiny import TINY_VAE  # noqa: E402

from sda.align import ProjectionConfig  # noqa: E402
from sda.align.lowpass import LowPass  # noqa: E402
from sda.align.projection import prepare_model, project, project_reference_style  # noqa: E402
from sda.diffusion import create_diffusion, randn_like_gen  # noqa: E402
from sda.gen.models import SD_VAE_CONFIG  # noqa: E402
from sda.models.adm_flags import create_model  # noqa: E402
from sda.utils.images import to_uint8  # noqa: E402
from sda.utils.seed import make_generator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("ResNet50", "SwinT", "ConvNeXtT", "SwinB", "ConvNeXtB")
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
PAPER_BATCH = {"ResNet50": 64, "SwinT": 128, "ConvNeXtT": 128, "SwinB": 128, "ConvNeXtB": 128}
SETTINGS = {
    "full": dict(
        adm=ALIGN_PRESETS["adm256"],
        batches=(8, 16, 32),
        steps=3,
        respacing="100",
        compile_batch=16,
        dit="DiT-XL/2",
        dit_size=256,
        dit_batch=32,
        dit_steps=5,
        vae=SD_VAE_CONFIG,
        train_batch=PAPER_BATCH,
        eval_batch=64,
    ),
    "smoke": dict(
        adm=ALIGN_PRESETS["small"],
        batches=(2, 4),
        steps=2,
        respacing="10",
        compile_batch=None,
        dit="DiT-S/8",
        dit_size=64,
        dit_batch=2,
        dit_steps=2,
        vae=TINY_VAE,
        train_batch=dict.fromkeys(RECIPES, 2),
        eval_batch=2,
        shrink=True,
    ),
}


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
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak allocated GiB of the block (CUDA; None elsewhere)."""
    box: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield box
    box["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def guarded(name: str, rows: list[dict], fn: Callable[[], dict | list[dict]]) -> None:
    """Run one measurement; an error becomes a row saying so (the check goes on with the others)."""
    try:
        out = fn()
        rows.extend(out if isinstance(out, list) else [out])
    except Exception as e:  # noqa: BLE001 - a device check reports every failure and continues
        rows.append({"name": name, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]})
        traceback.print_exc()
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    info["cuda"] = torch.version.cuda
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            q = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(q, capture_output=True, text=True, timeout=20).stdout.strip()
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info.update(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return info


# ----------------------------------------------------------------------------- 1. projection
class ProjectionBench:
    """The guided projection on one set of random weights, references and noise, in several setups."""

    def __init__(self, s: dict, device: torch.device):
        self.flags, self.device, self.n = {**s["adm"], "use_fp16": False}, device, s["steps"]
        torch.manual_seed(0)
        base = create_model(**self.flags)
        with torch.no_grad():  # non-zero output layers, so the guidance has work to do
            for p in base.parameters():
                p.add_(0.02 * torch.randn_like(p))
        self.state = {k: v.clone() for k, v in base.state_dict().items()}
        self.base = base.to(device).eval()
        self.diffusion = create_diffusion(s["respacing"])
        self.cfg = ProjectionConfig(N=self.n, D=4, scale=6.0)
        self.reference: dict[int, torch.Tensor] = {}  # fp32 pixels per batch size

    def inputs(self, b: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        size = self.flags["image_size"]
        gens = [make_generator(k) for k in range(b)]
        ref = (torch.rand(b, 3, size, size, generator=gens[0]) * 2 - 1).to(self.device)  # (B, 3, S, S)
        return ref, [randn_like_gen(ref.shape, gens, self.device) for _ in range(self.n + 1)]

    def model(self, precision: str, compile_mode: str | None = None) -> torch.nn.Module:
        m = create_model(**self.flags)
        m.load_state_dict(self.state)
        mode = compile_mode or "default"
        return prepare_model(m.to(self.device), precision, True, compile=compile_mode is not None, compile_mode=mode)

    def baseline(self, b: int) -> dict:
        ref, noises = self.inputs(b)

        def run() -> torch.Tensor:
            with naive_attention():
                return project_reference_style(self.base, self.diffusion, ref, self.cfg, noises)

        return self.measure("baseline fp32 (reference-style)", b, run)

    def fast(self, precision: str, b: int, compile_mode: str | None = None) -> dict:
        ref, noises = self.inputs(b)
        model, lpf = self.model(precision, compile_mode), LowPass(ref.shape[-2], ref.shape[-1], 4, self.device)

        def run() -> torch.Tensor:
            return project(model, self.diffusion, ref, self.cfg, noise=noises[0], step_noise=noises[1:], lowpass=lpf)

        name = f"{precision} channels_last" + (f" compile={compile_mode}" if compile_mode else "")
        return self.measure(name, b, run, reference=precision == "fp32" and compile_mode is None)

    def measure(self, name: str, b: int, fn: Callable[[], torch.Tensor], reference: bool = False) -> dict:
        with peak_memory(self.device) as mem:
            warm, _ = timed(fn, self.device)  # warm-up (compilation, kernel selection)
            t, out = timed(fn, self.device)
        px = to_uint8(out.float().cpu(), "adm")
        r = {"section": "projection", "name": name, "batch": b, "steps_timed": self.n, "warmup_s": round(warm, 2)}
        r.update(s_per_step=round(t / self.n, 4), images_per_s_full_N50=round(b * self.n / t / 50, 3), **mem)
        if reference:
            self.reference[b] = px
        if b in self.reference:
            r["max_pixel_dev_vs_fp32"] = int((px.int() - self.reference[b].int()).abs().max())
        return r


def projection_rows(s: dict, device: torch.device) -> list[dict]:
    """images/s of the guided projection: the reference-style baseline and fp32 / fp16 / bf16 (+compile)."""
    bench, rows = ProjectionBench(s, device), []
    guarded("projection baseline", rows, lambda: bench.baseline(s["batches"][0]))
    for b in s["batches"]:
        for prec in ("fp32", "fp16", "bf16"):
            guarded(f"projection {prec} b{b}", rows, partial(bench.fast, prec, b))
    if s["compile_batch"]:
        for prec in ("fp32", "fp16", "bf16"):
            for mode in ("default", "reduce-overhead"):
                guarded(f"projection {prec} {mode}", rows, partial(bench.fast, prec, s["compile_batch"], mode))
    base = next((r for r in rows if r.get("name", "").startswith("baseline") and "images_per_s_full_N50" in r), None)
    for r in rows:
        if base and r.get("batch") == base["batch"] and "images_per_s_full_N50" in r:
            r["x_baseline"] = round(r["images_per_s_full_N50"] / base["images_per_s_full_N50"], 2)
    return rows


# ----------------------------------------------------------------------------- 2. DiT + VAE
def dit_rows(s: dict, device: torch.device) -> list[dict]:
    """images/s of DiT sampling with VAE decoding, per precision, and the deviation from fp32."""
    from diffusers.models import AutoencoderKL

    from sda.gen.sampler import Sampler
    from sda.models.dit import build_dit

    torch.manual_seed(0)
    latent = s["dit_size"] // 8
    dit = build_dit(s["dit"], input_size=latent, in_channels=4, num_classes=1000).eval()
    vae = AutoencoderKL(**s["vae"]).eval()
    dit_state, vae_state = dit.state_dict(), vae.state_dict()
    b, rows, reference = s["dit_batch"], [], None
    for prec in ("fp32", "bf16", "fp16"):
        d = build_dit(s["dit"], input_size=latent, in_channels=4, num_classes=1000).eval()
        d.load_state_dict(dit_state)
        v = AutoencoderKL(**s["vae"]).eval()
        v.load_state_dict(vae_state)
        sampler = Sampler(
            model=d.to(device),
            diffusion=create_diffusion(str(s["dit_steps"])),
            input_size=latent,
            in_channels=4,
            num_classes=1000,
            device=device,
            vae=v.to(device),
            precision=prec,
        )
        draw = partial(sampler.sample, [k % 1000 for k in range(b)], list(range(b)))
        with peak_memory(device) as mem, torch.no_grad():
            warm, _ = timed(draw, device)
            t, images = timed(draw, device)
        r = {"section": "dit", "name": f"{s['dit']} + VAE {prec}", "batch": b, "steps_timed": s["dit_steps"]}
        r.update(s_per_batch=round(t, 3), images_per_s_250_steps=round(b * s["dit_steps"] / t / 250, 3), **mem)
        reference = images if reference is None else reference
        r["max_pixel_dev_vs_fp32"] = int((images.int() - reference.int()).abs().max())
        rows.append(r)
    return rows


# ----------------------------------------------------------------------------- 3. fine-tuning and eval
def _batch(model: Any, n: int, size: int, device: torch.device) -> dict:
    from mmpretrain.structures import DataSample

    inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(n)]
    samples = [DataSample().set_gt_label(k % 1000) for k in range(n)]
    return {"inputs": inputs, "data_samples": samples}


def finetune_row(name: str, s: dict, device: torch.device) -> dict:
    """One training iteration of a recipe (AMP on CUDA), at the paper's batch, halved until it fits."""
    import logging

    from mmengine.optim import build_optim_wrapper

    from sda.finetune.classifiers import build_classifier, load_config

    logging.getLogger("mmengine").setLevel(logging.WARNING)  # no line per parameter group
    cfg = load_config(ROOT / "configs" / "finetune" / f"{name}.py", SHRINK[name] if s.get("shrink") else None)
    amp = device.type == "cuda"
    if amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    model = build_classifier(cfg).to(device).train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = s["train_batch"][name]
    while True:
        try:
            step = partial(model.train_step, _batch(model, batch, 224, device), wrapper)
            with peak_memory(device) as mem:
                warm, _ = timed(step, device)
                t, losses = timed(step, device)
            break
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2
            torch.cuda.empty_cache()
    loss = float(sum(v.detach() for k, v in losses.items() if "loss" in k))
    return {
        "section": "finetune",
        "name": f"{name} train step" + (" amp" if amp else ""),
        "batch": batch,
        "paper_batch": s["train_batch"][name],
        "s_per_iter": round(t, 3),
        "images_per_s": round(batch / t, 1),
        "loss_finite": bool(torch.isfinite(torch.tensor(loss))),
        **mem,
    }


def eval_row(name: str, s: dict, device: torch.device) -> dict:
    """One evaluation batch of an eval config under autocast (fp16 on CUDA, as --amp)."""
    from sda.finetune.classifiers import Normalizer, build_classifier_from_config, load_config
    from sda.utils.precision import amp_precision, autocast

    cfg = load_config(ROOT / "configs" / "eval" / f"{name}.py", SHRINK[name] if s.get("shrink") else None)
    model = build_classifier_from_config(cfg, device=device)
    prec = amp_precision(device)
    x = Normalizer.from_config(cfg)(torch.randint(0, 256, (s["eval_batch"], 3, 224, 224)).to(device))
    with peak_memory(device) as mem, torch.no_grad(), autocast(prec, device.type):
        warm, _ = timed(lambda: model(x, mode="tensor"), device)
        t, logits = timed(lambda: model(x, mode="tensor"), device)
    return {
        "section": "eval",
        "name": f"{name} eval batch {prec}",
        "batch": s["eval_batch"],
        "s_per_batch": round(t, 3),
        "images_per_s": round(s["eval_batch"] / t, 1),
        "finite": bool(torch.isfinite(logits.float()).all()),
        **mem,
    }


# ----------------------------------------------------------------------------- 4. torchrun through the stages
def torchrun_rows(device: torch.device, timeout: float) -> list[dict]:
    """gen, align and eval under ``torchrun --nproc_per_node 1`` (NCCL on CUDA, gloo on a CPU) on tiny models."""
    from tiny import TINY_ADM, adm_cli_flags, make_layout, tiny_dit, tiny_unet  # the tests' tiny models

    rows = []
    dev = "cuda" if device.type == "cuda" else "cpu"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SDA_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        torch.save(tiny_unet().state_dict(), t / "adm.pt")
        tiny_dit(t / "dit.pt")
        make_layout(t / "C", "C", corruptions=("fog",), per_class=3)
        cmds = {
            "gen": [
                *run,
                str(ROOT / "gen/sample.py"),
                "--model",
                "DiT-d2w64h2/4",
                "--no-vae",
                "--image-size",
                "16",
                "--num-classes",
                "10",
                "--ckpt",
                str(t / "dit.pt"),
                "--num-sampling-steps",
                "4",
                "--classes",
                "0-2",
                "--images-per-class",
                "3",
                "--out-dir",
                str(t / "gen"),
                "--device",
                dev,
            ],
            "align": [
                *run,
                str(ROOT / "align/project.py"),
                *adm_cli_flags(TINY_ADM),
                "--class_cond",
                "False",
                "--timestep_respacing",
                "4",
                "--N",
                "2",
                "--batch_size",
                "4",
                "--model_path",
                str(t / "adm.pt"),
                "--base_samples",
                str(t / "C"),
                "--datatype",
                "C",
                "--corruption",
                "fog",
                "--save_dir",
                str(t / "out"),
                "--device",
                dev,
            ],
        }
        expect = {"gen": (t / "gen", 9), "align": (t / "out" / "ImageNet-C-Syn", 6)}
        for name, cmd in cmds.items():
            t0 = time.time()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            root, n = expect[name]
            files = [p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpeg")] if root.exists() else []
            names = [str(p.relative_to(root)) for p in files]
            rows.append(
                {
                    "section": "torchrun",
                    "name": f"{name} (1 process, {dev})",
                    "rc": r.returncode,
                    "outputs": len(files),
                    "expected": n,
                    "exactly_once": len(set(names)) == len(names) == n,
                    "seconds": round(time.time() - t0, 1),
                    "stderr_tail": _error_line(r.stderr) if r.returncode else "",
                }
            )
        rows.append(_torchrun_eval(t, run, dev, env, timeout))
    return rows


def _torchrun_eval(t: Path, run: list[str], dev: str, env: dict, timeout: float) -> dict:
    from sda.finetune.classifiers import build_classifier_from_config

    cfg = ROOT / "configs" / "finetune" / "TinyResNet.py"
    two = {"model.head.num_classes": 2}
    torch.save({"state_dict": build_classifier_from_config(cfg, cfg_options=two).state_dict()}, t / "cls.pth")
    raw = t / "C"
    out = t / "eval.json"
    cmd = [
        *run,
        str(ROOT / "eval/evaluate.py"),
        str(cfg),
        str(t / "cls.pth"),
        "--originckpt",
        str(t / "cls.pth"),
        "--corruption",
        "fog",
        "--data_prefix1",
        str(raw),
        "--data_prefix2",
        str(t / "out" / "ImageNet-C-Syn"),
        "--device",
        dev,
        "--num-workers",
        "0",
        "--launcher",
        "pytorch",
        "--out",
        str(out),
        "--cfg-options",
        "model.head.num_classes=2",
    ]
    t0 = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    images = json.loads(out.read_text())["images"] if out.is_file() else 0
    return {
        "section": "torchrun",
        "name": f"eval (1 process, {dev})",
        "rc": r.returncode,
        "outputs": images,
        "expected": 6,
        "exactly_once": images == 6,
        "seconds": round(time.time() - t0, 1),
        "stderr_tail": _error_line(r.stderr) if r.returncode else "",
    }


def _error_line(stderr: str) -> str:
    """The worker's one-line error (``error: ...``) out of torchrun's report, else the tail."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ") or "Error" in line]
    return (errors[0] if errors else stderr[-300:])[:300]


# ----------------------------------------------------------------------------- main
def run_check(smoke: bool, device: torch.device, budget_s: float) -> dict[str, Any]:
    s = SETTINGS["smoke" if smoke else "full"]
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    report: dict[str, Any] = {"machine": machine(device), "mode": "smoke" if smoke else "full", "rows": []}
    rows, t0 = report["rows"], time.time()
    sections = [
        ("projection", lambda: projection_rows(s, device)),
        ("dit", lambda: dit_rows(s, device)),
        *((f"finetune {n}", lambda n=n: finetune_row(n, s, device)) for n in RECIPES),
        *((f"eval {n}", lambda n=n: eval_row(n, s, device)) for n in RECIPES),
        ("torchrun", lambda: torchrun_rows(device, timeout=300)),
    ]
    for name, fn in sections:
        if time.time() - t0 > budget_s:
            rows.append({"name": name, "error": f"skipped: the {budget_s:.0f} s budget is spent"})
            continue
        print(f"[device check] {name} ({time.time() - t0:.0f} s)", flush=True)
        guarded(name, rows, fn)
    if smoke:
        rows.append(
            {
                "section": "projection",
                "name": "torch.compile rows",
                "skipped": "CUDA only (compiling on a CPU takes minutes)",
            }
        )
    report["seconds"] = round(time.time() - t0, 1)
    return report


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
        "peak_gib",
        "s_per_step",
        "warmup_s",
        "exactly_once",
        "error",
    ]
    present = [k for k in keys if any(k in r for r in report["rows"])]
    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    for r in report["rows"]:
        lines.append("| " + " | ".join(str(r.get(k, "")) for k in present) + " |")
    m = report["machine"]
    head = f"device check ({report['mode']}): {m.get('gpu') or m.get('cpu')}, torch {m['torch']}, CUDA {m['cuda']}"
    return head + f", {report['seconds']} s\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny models on a CPU: the same code paths, in seconds")
    p.add_argument("--out", default="device_check.json", help="the JSON report")
    p.add_argument("--budget", type=float, default=420.0, help="seconds after which the remaining sections are skipped")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if not args.smoke and device.type != "cuda":
        print("error: no CUDA GPU is visible; run with --smoke to check the code paths on a CPU", file=sys.stderr)
        return 2
    report = run_check(args.smoke, device, args.budget)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {args.out}")
    failed = [r for r in report["rows"] if r.get("error") or r.get("rc") or r.get("exactly_once") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
