"""Stage 1 (gen): class-conditional synthesis of a labelled image set with DiT (or a class-conditional ADM).

Every image is keyed by (class, index) and drawn with its own CPU generator seeded by
``image_seed(global_seed, class, index)``: its initial noise and every step's noise depend only on
that key, never on the batch size, the number of processes or the order of work. The set is
``<root>/<class:04d>/<index:06d>.png`` with exactly ``images_per_class`` images per requested class.
Work is sharded over torchrun ranks; finished PNGs are skipped on a rerun; every file is written
to a temporary name and renamed, so an interrupted run leaves complete images only.

Floating point: the noise is identical by construction, but BLAS kernels may round differently for
different batch shapes or thread counts (last bits of float32), which can move a rare pixel by one
level. ``precision="fp64"`` (slow; for checks) makes the bytes identical in practice.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from sda.diffusion import create_diffusion, randn_like_gen
from sda.models.dit import DiT_models, build_dit, is_dit_name
from sda.utils import dist as sdist
from sda.utils.checkpoint import extract_state_dict, file_sha256, load_state_dict_strict, safe_load
from sda.utils.errors import UserError
from sda.utils.io import save_image, write_json
from sda.utils.progress import log, progress
from sda.utils.seed import image_seed, make_generator

VAE_SCALE = 0.18215  # latent scale of the Stable Diffusion VAE (DiT decodes vae.decode(z / VAE_SCALE))
VAE_DOWNSAMPLE = 8  # pixels per latent cell
LATENT_CHANNELS = 4
PRETRAINED_DIR = "pretrained_ckpt"  # where scripts/download_ckpt.sh puts the weights
ADM_MODEL = "ADM"
PRECISIONS = ("fp32", "bf16", "fp16", "fp64")
MANIFEST = "manifest.json"
GRID_SUFFIX = "_grid.png"  # the sample grid lies beside the root, so it never looks like a class image
# Settings that change the pixels: a rerun into a folder made with other values is refused.
PIXEL_SETTINGS = (
    "model",
    "image_size",
    "num_classes",
    "cfg_scale",
    "cfg_channels",
    "num_sampling_steps",
    "global_seed",
    "vae",
    "no_vae",
    "precision",
    "tf32",
    "learn_sigma",
    "adm",
    "clip_denoised",
)


# ----------------------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Stage 1 (gen): class-conditional images <root>/<class:04d>/<index:06d>.png from DiT or ADM.",
        epilog="With --model ADM, guided-diffusion's model flags (--num_channels 256 --class_cond True ...) "
        "follow; their defaults are the released 256x256 class-conditional model's.",
    )
    p.add_argument(
        "--model",
        default="DiT-XL/2",
        metavar="NAME",
        help=f"{', '.join(DiT_models)}, a custom DiT-d<depth>w<width>h<heads>/<patch>, or {ADM_MODEL}",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="output size in pixels (the model's input size with --no-vae; latent = size / 8 otherwise)",
    )
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance; 1.0 = none (SDA)")
    p.add_argument(
        "--cfg-channels",
        choices=("3", "all"),
        default="3",
        help="guide the first 3 output channels (official DiT) or all epsilon channels (diffusers)",
    )
    p.add_argument("--num-sampling-steps", type=int, default=250)
    p.add_argument("--global-seed", type=int, default=0)
    p.add_argument(
        "--ckpt",
        default=None,
        help=f"model checkpoint (default for DiT-XL/2: {PRETRAINED_DIR}/DiT-XL-2-<size>x<size>.pt)",
    )
    p.add_argument("--allow-pickle", action="store_true", help="load a checkpoint with arbitrary pickles (trusted)")
    p.add_argument(
        "--learn-sigma",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="DiT predicts the variance too (all official and DiT-recipe checkpoints)",
    )
    p.add_argument("--vae", choices=("ema", "mse"), default="ema")
    p.add_argument(
        "--vae-path",
        default=None,
        help=f"local diffusers AutoencoderKL folder or single file (default {PRETRAINED_DIR}/sd-vae-ft-<vae>)",
    )
    p.add_argument("--no-vae", action="store_true", help="pixel-space model: no VAE, 3 channels")
    p.add_argument(
        "--clip-denoised",
        choices=("auto", "true", "false"),
        default="auto",
        help="clip each step's predicted x0 to [-1, 1]; auto: off in latent space (official DiT), "
        "on in pixel space (guided-diffusion's sampler)",
    )
    p.add_argument("--sample-dir", default="samples", help="images go to <sample-dir>/<folder naming the settings>")
    p.add_argument("--out-dir", default=None, help="write the class folders directly here (overrides --sample-dir)")
    p.add_argument("--images-per-class", type=int, default=50)
    p.add_argument("--classes", default=None, help="e.g. 0-999 or 3,7,9 or 0-4,10 (default: all classes)")
    p.add_argument("--per-proc-batch-size", type=int, default=32)
    p.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TF32 matmuls on Ampere+ GPUs (the reference's default)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (reference); bf16/fp16 autocast; fp64 for bit-exact checks on CPU",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    p.add_argument("--grid-size", type=int, default=8, help="classes x images in the sample grid (0: no grid)")
    return p


def _adm_parser(args: argparse.Namespace) -> argparse.ArgumentParser:
    from sda.models.unet import ADM_FLAGS, add_model_args, str2bool

    defaults = {**ADM_FLAGS["256_cond"], "image_size": args.image_size}
    p = argparse.ArgumentParser(prog="gen/sample.py --model ADM", add_help=False)
    add_model_args(p, defaults=defaults)
    p.add_argument("--diffusion_steps", type=int, default=defaults["diffusion_steps"])
    p.add_argument("--noise_schedule", default=defaults["noise_schedule"])
    p.add_argument("--predict_xstart", type=str2bool, default=False, help="the model predicts x0 (not the noise)")
    p.add_argument("--predict_v", type=str2bool, default=False, help="the model predicts v (not the noise)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the flags; with ``--model ADM`` the guided-diffusion flags land in ``args.adm`` (a dict)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.adm = None
    if args.model == ADM_MODEL:
        adm = _adm_parser(args)
        args.adm = vars(adm.parse_args(rest))
        args.no_vae = True
        args.learn_sigma = args.adm["learn_sigma"]
        if args.adm["image_size"] != args.image_size:
            args.image_size = args.adm["image_size"]
    elif not is_dit_name(args.model):
        parser.error(
            f"--model {args.model!r}: use one of {', '.join(DiT_models)}, "
            f"DiT-d<depth>w<width>h<heads>/<patch> or {ADM_MODEL}"
        )
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.clip_denoised = args.no_vae if args.clip_denoised == "auto" else args.clip_denoised == "true"
    return args


def parse_classes(spec: str | None, num_classes: int) -> list[int]:
    """``"0-4,10"`` -> [0, 1, 2, 3, 4, 10] (sorted, unique); None -> every class."""
    if spec is None or spec.strip() in ("", "all"):
        return list(range(num_classes))
    out: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise UserError(f"--classes {spec!r}: cannot read {part!r}; write e.g. 0-999 or 3,7,9")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi or hi >= num_classes:
            raise UserError(f"--classes {spec!r}: {part!r} is outside 0-{num_classes - 1}; fix the range")
        out.update(range(lo, hi + 1))
    return sorted(out)


def folder_name(args: argparse.Namespace) -> str:
    """The reference's folder name (model, checkpoint, size, vae, cfg, seed), plus non-default settings."""
    model = args.model.replace("/", "-")
    ckpt = Path(args.ckpt).name.replace(".pt", "") if args.ckpt else "pretrained"
    vae = "none" if args.no_vae else args.vae
    name = f"{model}-{ckpt}-size-{args.image_size}-vae-{vae}-cfg-{args.cfg_scale}-seed-{args.global_seed}"
    if args.num_sampling_steps != 250:
        name += f"-steps-{args.num_sampling_steps}"
    if args.cfg_scale > 1.0 and args.cfg_channels == "all":
        name += "-cfgall"
    if args.precision != "fp32":
        name += f"-{args.precision}"
    return name


def output_root(args: argparse.Namespace) -> Path:
    return Path(args.out_dir) if args.out_dir else Path(args.sample_dir) / folder_name(args)


def image_path(root: str | os.PathLike, cls: int, index: int) -> Path:
    return Path(root) / f"{cls:04d}" / f"{index:06d}.png"


def grid_path(root: str | os.PathLike) -> Path:
    root = Path(root)
    return root.parent / f"{root.name}{GRID_SUFFIX}"


# ------------------------------------------------------------------------------------------------- loading
def default_ckpt(args: argparse.Namespace) -> str:
    if args.ckpt:
        return args.ckpt
    if args.model == "DiT-XL/2" and args.image_size in (256, 512) and not args.no_vae:
        return f"{PRETRAINED_DIR}/DiT-XL-2-{args.image_size}x{args.image_size}.pt"
    raise UserError(f"--ckpt is required for {args.model} at {args.image_size} px; pass the checkpoint file")


def load_dit(
    name: str,
    ckpt: str | os.PathLike,
    *,
    input_size: int,
    num_classes: int,
    in_channels: int,
    learn_sigma: bool = True,
    allow_pickle: bool = False,
) -> nn.Module:
    """A DiT with the weights of ``ckpt`` (a plain state dict or a training dict; "ema" preferred), strictly.

    A label table of exactly ``num_classes`` rows means the model was trained without label dropout.
    """
    sd = extract_state_dict(safe_load(ckpt, allow_pickle=allow_pickle))
    table = sd.get("y_embedder.embedding_table.weight")
    dropout = 0.0 if table is not None and table.shape[0] == num_classes else 0.1
    model = build_dit(
        name,
        input_size=input_size,
        num_classes=num_classes,
        in_channels=in_channels,
        learn_sigma=learn_sigma,
        class_dropout_prob=dropout,
    )
    load_state_dict_strict(model, sd, what=f"checkpoint {ckpt}")
    return model.eval()


def load_adm(
    flags: dict[str, Any], ckpt: str | os.PathLike, *, num_classes: int, allow_pickle: bool = False
) -> nn.Module:
    """A class-conditional guided-diffusion UNet from its flags and checkpoint (fp16 torso if use_fp16)."""
    from sda.models.unet import create_model, load_adm_checkpoint, model_kwargs_from_args

    if not flags.get("class_cond"):
        raise UserError("gen needs a class-conditional ADM; pass --class_cond True with a class-conditional checkpoint")
    model = create_model(**{**model_kwargs_from_args(flags), "num_classes": num_classes})
    load_adm_checkpoint(model, ckpt, allow_pickle=allow_pickle)
    if flags.get("use_fp16"):
        model.convert_to_fp16()  # as the reference does
    return model.eval()


def load_vae(path: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A diffusers AutoencoderKL from a local folder (or single file), never fetched from the network."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"VAE {path} not found; get it with scripts/download_ckpt.sh or download the Hugging Face repo "
            "stabilityai/sd-vae-ft-ema (or -mse) into that folder, or pass --vae-path"
        )
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is fetched at run time
    from diffusers.models import AutoencoderKL

    try:
        if path.is_dir():
            vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
        else:
            vae = AutoencoderKL.from_single_file(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot load the VAE from {path} ({type(e).__name__}); "
            "pass a diffusers AutoencoderKL folder (config.json + weights)"
        ) from e
    return vae.to(device=device, dtype=dtype).eval()


# ------------------------------------------------------------------------------------------------ sampling
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (N, 3, H, W) -> uint8 (N, H, W, 3) on CPU, as the reference: clamp(127.5 x + 128)."""
    return torch.clamp(127.5 * x + 128.0, 0, 255).permute(0, 2, 3, 1).to("cpu", dtype=torch.uint8)


@dataclass
class Sampler:
    """Draws images for (label, seed) pairs; an image depends only on its own seed and label."""

    model: nn.Module
    diffusion: Any
    input_size: int
    in_channels: int
    num_classes: int
    device: torch.device
    cfg_scale: float = 1.0
    cfg_channels: str = "3"
    vae: Any = None
    precision: str = "fp32"
    clip_denoised: bool = False
    _dummy: torch.Generator = field(default_factory=lambda: make_generator(0), repr=False)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "fp64" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision in ("bf16", "fp16"):
            dt = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(self.device.type, dtype=dt)
        return contextlib.nullcontext()

    def model_fn(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            if self.cfg_scale > 1.0:
                out = self.model.forward_with_cfg(x, t, y, self.cfg_scale, self.cfg_channels)  # (2N, C_out, H, W)
            else:
                out = self.model(x, t, y)  # (N, C_out, H, W)
        return out.to(x.dtype)

    @torch.no_grad()
    def sample(self, labels: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """uint8 images (N, H, W, 3) on CPU for labels[i] drawn with seeds[i]."""
        n = len(labels)
        gens = [make_generator(s) for s in seeds]
        shape = (n, self.in_channels, self.input_size, self.input_size)
        z = randn_like_gen(shape, gens, self.device, self.dtype)  # (N, C, S, S) x_T
        y = torch.tensor(list(labels), device=self.device, dtype=torch.long)  # (N,)
        if self.cfg_scale > 1.0:
            # Second half: the same x_T with the null class; its own trajectory is discarded, so its
            # noise comes from one throw-away generator.
            z = torch.cat([z, z], 0)  # (2N, C, S, S)
            y = torch.cat([y, torch.full_like(y, self.num_classes)], 0)  # (2N,)
            gens = gens + [self._dummy] * n
        x = self.diffusion.p_sample_loop(
            self.model_fn,
            z.shape,
            noise=z,
            clip_denoised=self.clip_denoised,
            model_kwargs=dict(y=y),
            device=self.device,
            generator=gens,
        )
        x = x[:n]  # (N, C, S, S)
        if self.vae is not None:
            with self.autocast():
                x = self.vae.decode((x / VAE_SCALE).to(self.vae.dtype)).sample  # (N, 3, 8S, 8S)
            x = x.to(self.dtype)
        return to_uint8(x)  # (N, H, W, 3)


def build_sampler(args: argparse.Namespace, device: torch.device) -> Sampler:
    """Model, diffusion and (optional) VAE from parsed flags, on ``device``."""
    if args.cfg_scale < 1.0:
        raise UserError(f"--cfg-scale {args.cfg_scale} < 1.0; use 1.0 (no guidance, SDA) or more")
    if args.image_size <= 0 or (not args.no_vae and args.image_size % VAE_DOWNSAMPLE):
        raise UserError(f"--image-size {args.image_size} must be a positive multiple of {VAE_DOWNSAMPLE} with a VAE")
    ckpt = default_ckpt(args)
    if args.model == ADM_MODEL:
        if args.cfg_scale > 1.0:
            raise UserError("ADM has no null class for classifier-free guidance; use --cfg-scale 1.0")
        if args.precision == "fp64":
            raise UserError("--precision fp64 is for DiT only (the UNet embeds timesteps in float32); use fp32")
        if args.adm["predict_xstart"] and args.adm["predict_v"]:
            raise UserError("--predict_xstart and --predict_v exclude each other; set at most one")
        model = load_adm(args.adm, ckpt, num_classes=args.num_classes, allow_pickle=args.allow_pickle)
        diffusion = create_diffusion(
            str(args.num_sampling_steps),
            noise_schedule=args.adm["noise_schedule"],
            learn_sigma=args.adm["learn_sigma"],
            diffusion_steps=args.adm["diffusion_steps"],
            predict_xstart=args.adm["predict_xstart"],
            predict_v=args.adm["predict_v"],
        )
        input_size, in_channels = args.image_size, 3
    else:
        in_channels = 3 if args.no_vae else LATENT_CHANNELS
        input_size = args.image_size if args.no_vae else args.image_size // VAE_DOWNSAMPLE
        model = load_dit(
            args.model,
            ckpt,
            input_size=input_size,
            num_classes=args.num_classes,
            in_channels=in_channels,
            learn_sigma=args.learn_sigma,
            allow_pickle=args.allow_pickle,
        )
        if args.cfg_scale > 1.0 and model.y_embedder.dropout_prob == 0:
            raise UserError(f"checkpoint {ckpt} has no null class (trained without label dropout); use --cfg-scale 1.0")
        diffusion = create_diffusion(str(args.num_sampling_steps), learn_sigma=args.learn_sigma)
    dtype = torch.float64 if args.precision == "fp64" else torch.float32
    model = model.to(device)
    if args.precision == "fp64":
        model = model.double()
    vae = None
    if not args.no_vae:
        vae = load_vae(args.vae_path or f"{PRETRAINED_DIR}/sd-vae-ft-{args.vae}", device, dtype)
    return Sampler(
        model=model,
        diffusion=diffusion,
        input_size=input_size,
        in_channels=in_channels,
        num_classes=args.num_classes,
        device=device,
        cfg_scale=args.cfg_scale,
        cfg_channels=args.cfg_channels,
        vae=vae,
        precision=args.precision,
        clip_denoised=args.clip_denoised,
    )


# ---------------------------------------------------------------------------------------------- the set
def pending_items(root: str | os.PathLike, classes: Sequence[int], images_per_class: int) -> list[tuple[int, int]]:
    """(class, index) pairs whose PNG is not there yet, class-major."""
    return [(c, j) for c in classes for j in range(images_per_class) if not image_path(root, c, j).is_file()]


def remove_partials(root: str | os.PathLike) -> int:
    """Delete temporary files left by an interrupted run (hidden ``.*.tmp`` in the class folders)."""
    n = 0
    for tmp in Path(root).glob("[0-9]*/.*.tmp"):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def count_images(root: str | os.PathLike) -> dict[str, int]:
    """PNG count per class folder."""
    root = Path(root)
    return {d.name: sum(1 for f in d.glob("*.png")) for d in sorted(root.iterdir()) if d.is_dir() and d.name.isdigit()}


def make_grid(root: str | os.PathLike, classes: Sequence[int], images_per_class: int, size: int = 8) -> Image.Image:
    """A grid of up to ``size`` classes (rows) x ``size`` images (columns), for a quick look."""
    rows = [c for c in classes[:size]]
    cols = min(size, images_per_class)
    tiles = [[Image.open(image_path(root, c, j)).convert("RGB") for j in range(cols)] for c in rows]
    w, h = tiles[0][0].size
    grid = Image.new("RGB", (cols * w, len(rows) * h))
    for r, row in enumerate(tiles):
        for k, tile in enumerate(row):
            grid.paste(tile, (k * w, r * h))
    return grid


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def pixel_settings(args: argparse.Namespace, ckpt_sha256: str) -> dict[str, Any]:
    s = {k: getattr(args, k) for k in PIXEL_SETTINGS}
    s["ckpt_sha256"] = ckpt_sha256
    return s


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for pkg in ("sda-tta", "diffusers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


def _check_resume(root: Path, settings: dict[str, Any]) -> None:
    manifest = root / MANIFEST
    if not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text()).get("settings", {})
    except (OSError, ValueError):
        return
    diff = sorted(k for k in settings if k in old and old[k] != settings[k])
    if diff:
        raise UserError(
            f"{root} was generated with other settings ({', '.join(diff)}); "
            "use another --out-dir/--sample-dir or the same settings to resume"
        )


@torch.no_grad()  # scoped: the caller's autograd state is left as it was
def generate(args: argparse.Namespace) -> dict[str, Any]:
    """Run Stage 1 for parsed flags; returns the manifest (rank 0) or {} (other ranks)."""
    if args.images_per_class < 1 or args.per_proc_batch_size < 1:
        raise UserError("--images-per-class and --per-proc-batch-size must be at least 1")
    classes = parse_classes(args.classes, args.num_classes)
    info = sdist.init_distributed(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    start = time.time()
    try:
        sampler = build_sampler(args, info.device)
        ckpt = default_ckpt(args)
        root = output_root(args)
        payload: tuple[str, Any] = ("ok", None)
        if info.rank == 0:
            try:
                settings = pixel_settings(args, file_sha256(ckpt))
                _check_resume(root, settings)
                root.mkdir(parents=True, exist_ok=True)
                removed = remove_partials(root)
                todo = pending_items(root, classes, args.images_per_class)
                manifest = _manifest(args, root, ckpt, settings, classes, info, status="running")
                write_json(root / MANIFEST, manifest)
                payload = ("ok", todo)
                log(
                    f"gen: {root} - {len(classes)} classes x {args.images_per_class} images, "
                    f"{len(todo)} to make on {info.world_size} process(es)"
                    + (f", removed {removed} partial files" if removed else "")
                )
            except UserError as e:
                payload = ("error", str(e))
        status, todo = sdist.all_gather_object(payload)[0]
        if status == "error":
            raise UserError(todo)
        mine = sdist.shard(todo, info.rank, info.world_size)
        with progress(total=len(mine), desc=f"gen (rank 0 of {info.world_size})", unit="img") as bar:
            for batch in batches(mine, args.per_proc_batch_size):
                seeds = [image_seed(args.global_seed, c, j) for c, j in batch]
                images = sampler.sample([c for c, _ in batch], seeds).numpy()  # (B, H, W, 3)
                for (c, j), img in zip(batch, images):
                    save_image(Image.fromarray(img), image_path(root, c, j))
                bar.update(len(batch))
        sdist.barrier()
        if info.rank != 0:
            return {}
        manifest.update(status="complete", counts=count_images(root), seconds=round(time.time() - start, 1))
        manifest["total"] = sum(manifest["counts"].values())
        if args.grid_size > 0:
            save_image(make_grid(root, classes, args.images_per_class, args.grid_size), grid_path(root))
            manifest["grid"] = str(grid_path(root))
        write_json(root / MANIFEST, manifest)
        short = [c for c in classes if manifest["counts"].get(f"{c:04d}", 0) < args.images_per_class]
        if short:
            raise UserError(
                f"{len(short)} classes have fewer than {args.images_per_class} images (e.g. {short[:3]}); "
                "rerun the same command"
            )
        log(f"gen: done, {manifest['total']} images in {root} ({manifest['seconds']} s)")
        return manifest
    finally:
        sdist.cleanup()


def _manifest(
    args: argparse.Namespace,
    root: Path,
    ckpt: str,
    settings: dict[str, Any],
    classes: list[int],
    info: sdist.DistInfo,
    status: str,
) -> dict[str, Any]:
    return {
        "stage": "gen",
        "status": status,
        "root": str(root),
        "layout": "<class:04d>/<index:06d>.png",
        "seed_rule": "per image: torch CPU generator seeded with sda.utils.seed.image_seed(global_seed, class, index)",
        "settings": settings,
        "checkpoint": {"path": str(ckpt), "sha256": settings["ckpt_sha256"]},
        "vae_path": None if args.no_vae else str(args.vae_path or f"{PRETRAINED_DIR}/sd-vae-ft-{args.vae}"),
        "classes": args.classes or f"0-{args.num_classes - 1}",
        "num_requested_classes": len(classes),
        "images_per_class": args.images_per_class,
        "run": {
            "world_size": info.world_size,
            "device": str(info.device),
            "per_proc_batch_size": args.per_proc_batch_size,
            "command": " ".join(sys.argv),
        },
        "versions": versions(),
    }
