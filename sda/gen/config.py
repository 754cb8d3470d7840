"""Stage 1 (gen) settings: ``GenConfig``, its command-line flags (DiT's ``sample_ddp.py`` names), validated once."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sda.models.dit import DiT_models, is_dit_name
from sda.utils.errors import UserError
from sda.utils.precision import PRECISIONS, check_precision
from sda.utils.weights import PRETRAINED_DIR, dit_file, vae_dir

ADM_MODEL = "ADM"
VAE_DOWNSAMPLE = 8  # pixels per latent cell of the Stable Diffusion VAE
LATENT_CHANNELS = 4
DEFAULT_STEPS = 250  # the paper's DDPM steps; other counts are named in the folder
ALGORITHM = "gen-2"  # the sampler's version in run keys: bump it when a change alters the pixels
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


@dataclass(frozen=True)
class GenConfig:
    """Everything a Stage 1 run depends on. ``adm``: guided-diffusion's model and diffusion flags when
    ``model == "ADM"`` (a class-conditional UNet in pixel space), else None."""

    model: str = "DiT-XL/2"
    image_size: int = 256
    num_classes: int = 1000
    cfg_scale: float = 1.0
    cfg_channels: str = "3"
    num_sampling_steps: int = DEFAULT_STEPS
    global_seed: int = 0
    ckpt: str | None = None
    allow_pickle: bool = False
    learn_sigma: bool = True
    vae: str = "ema"
    vae_path: str | None = None
    no_vae: bool = False
    clip_denoised: bool = False
    sample_dir: str = "samples"
    out_dir: str | None = None
    images_per_class: int = 50
    classes: str | None = None
    per_proc_batch_size: int = 32
    tf32: bool = True
    precision: str = "fp32"
    device: str | None = None
    grid_size: int = 8
    adm: dict[str, Any] | None = None
    class_list: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.model != ADM_MODEL and not is_dit_name(self.model):
            raise UserError(
                f"--model {self.model!r}: use one of {', '.join(DiT_models)}, "
                f"DiT-d<depth>w<width>h<heads>/<patch> or {ADM_MODEL}"
            )
        check_precision(self.precision, PRECISIONS)
        if self.images_per_class < 1 or self.per_proc_batch_size < 1:
            raise UserError("--images-per-class and --per-proc-batch-size must be at least 1")
        if self.num_sampling_steps < 1:
            raise UserError(f"--num-sampling-steps {self.num_sampling_steps}: use at least 1 (the paper: 250)")
        if self.num_classes < 1:
            raise UserError(f"--num-classes {self.num_classes}: use at least 1")
        if self.cfg_scale < 1.0:
            raise UserError(f"--cfg-scale {self.cfg_scale} < 1.0; use 1.0 (no guidance, SDA) or more")
        if self.image_size <= 0 or (not self.no_vae and self.image_size % VAE_DOWNSAMPLE):
            raise UserError(
                f"--image-size {self.image_size} must be a positive multiple of {VAE_DOWNSAMPLE} with a VAE"
            )
        if self.adm is not None:
            self._check_adm(self.adm)
        object.__setattr__(self, "class_list", parse_classes(self.classes, self.num_classes))

    def _check_adm(self, adm: dict[str, Any]) -> None:
        if self.precision == "fp64":
            raise UserError("--precision fp64 is for DiT only (the UNet embeds timesteps in float32); use fp32")
        if adm.get("predict_xstart") and adm.get("predict_v"):
            raise UserError("--predict_xstart and --predict_v exclude each other; set at most one")
        if not adm.get("class_cond"):
            raise UserError(
                "gen needs a class-conditional ADM; pass --class_cond True with a class-conditional checkpoint"
            )

    @property
    def is_adm(self) -> bool:
        return self.model == ADM_MODEL

    @property
    def in_channels(self) -> int:
        return 3 if self.no_vae else LATENT_CHANNELS

    @property
    def input_size(self) -> int:
        """The model's spatial input size (pixels without a VAE, latent cells with one)."""
        return self.image_size if self.no_vae else self.image_size // VAE_DOWNSAMPLE

    @property
    def checkpoint(self) -> str:
        """``--ckpt``, or the official DiT-XL/2 file for 256 / 512 px latent sampling."""
        if self.ckpt:
            return self.ckpt
        if self.model == "DiT-XL/2" and self.image_size in (256, 512) and not self.no_vae:
            return f"{PRETRAINED_DIR}/{dit_file(self.image_size)}"
        raise UserError(f"--ckpt is required for {self.model} at {self.image_size} px; pass the checkpoint file")

    @property
    def vae_folder(self) -> str | None:
        return None if self.no_vae else str(self.vae_path or vae_dir(self.vae))

    def folder_name(self) -> str:
        """The reference's folder name (model, checkpoint, size, vae, cfg, seed), plus non-default settings."""
        model = self.model.replace("/", "-")
        ckpt = Path(self.ckpt).name.replace(".pt", "") if self.ckpt else "pretrained"
        vae = "none" if self.no_vae else self.vae
        name = f"{model}-{ckpt}-size-{self.image_size}-vae-{vae}-cfg-{self.cfg_scale}-seed-{self.global_seed}"
        if self.num_sampling_steps != DEFAULT_STEPS:
            name += f"-steps-{self.num_sampling_steps}"
        if self.cfg_scale > 1.0 and self.cfg_channels == "all":
            name += "-cfgall"
        if self.precision != "fp32":
            name += f"-{self.precision}"
        return name

    def output_root(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path(self.sample_dir) / self.folder_name()

    def pixel_settings(self, ckpt_sha256: str, vae_sha256: str | None = None, device: str = "cpu") -> dict[str, Any]:
        """The run key: every setting that changes the pixels (the batch size and the device included: kernels
        round differently for other shapes and devices), the weights' content hashes and the code's version."""
        values = asdict(self)
        return {
            "algorithm": ALGORITHM,
            **{k: values[k] for k in PIXEL_SETTINGS},
            "per_proc_batch_size": self.per_proc_batch_size,
            "device": device,
            "ckpt_sha256": ckpt_sha256,
            "vae_sha256": vae_sha256,
        }

    # ------------------------------------------------------------------------------------ command line
    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> GenConfig:
        """Parse ``gen/sample.py`` flags; with ``--model ADM`` guided-diffusion's model flags follow."""
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        adm = None
        if args.model == ADM_MODEL:
            adm = vars(_adm_parser(args.image_size).parse_args(rest))
            args.no_vae = True
            args.learn_sigma = adm["learn_sigma"]
            args.image_size = adm["image_size"]
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        clip = args.no_vae if args.clip_denoised == "auto" else args.clip_denoised == "true"
        return cls(**{**vars(args), "clip_denoised": clip, "adm": adm})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gen/sample.py",
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
    p.add_argument("--num-sampling-steps", type=int, default=DEFAULT_STEPS)
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


def _adm_parser(image_size: int) -> argparse.ArgumentParser:
    """guided-diffusion's model flags and the diffusion flags gen uses, defaults: the 256 px conditional model."""
    from sda.models.adm_flags import ADM_FLAGS, add_diffusion_args, add_model_args

    defaults = {**ADM_FLAGS["256_cond"], "image_size": image_size}
    p = argparse.ArgumentParser(prog="gen/sample.py --model ADM", add_help=False)
    add_model_args(p, defaults=defaults)
    add_diffusion_args(p, ("diffusion_steps", "noise_schedule", "predict_xstart", "predict_v"), defaults)
    return p
