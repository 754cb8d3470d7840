"""Stage 2 (align) settings: the projection (``ProjectionConfig``) and the run over a layout (``AlignConfig``).

User input is checked here, once, with one line naming the flag; the math in ``sda.align.projection`` and
``sda.align.lowpass`` then only asserts its own preconditions.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sda.align.lowpass import LOWPASS_KINDS, check_downsample
from sda.utils.errors import UserError
from sda.utils.layout import parse_corruptions, parse_severities
from sda.utils.precision import check_precision

GUIDANCE_NORMS = ("batch", "sample")
GUIDANCES = ("lowpass", "none")  # DDA's low-pass guidance; none = DiffPure (Nie et al., ICML 2022)
DIFFPURE_T = 150  # DiffPure's ImageNet t* = 0.15 of the 1000-step schedule (NVlabs/DiffPure run scripts: --t 150)
PRECISIONS = ("fp32", "fp16", "bf16")  # fp16 is the reference's convert_to_fp16(); bf16 runs under autocast
DATATYPES = ("D", "C", "W")


@dataclass(frozen=True)
class ProjectionConfig:
    """DDA's guided projection: noise to respaced index ``N``, then ``N`` guided steps.

    :param N: the respaced noising index, also the number of guided steps (SDA: 50 of 100).
    :param D: the low-pass factor (a power of two; SDA: 4).
    :param scale: the guidance scale (SDA: 6).
    :param guidance_norm: ``batch``: one norm over the whole batch tensor (the reference); ``sample``:
        per-image norms, so an image does not depend on its batch.
    :param lowpass: ``matrix`` (precomputed resize-right operators) or ``resize_right`` (per call).
    :param clip_denoised: clip each step's x0 estimate to [-1, 1] (the reference: True).
    :param guidance: ``lowpass`` (DDA) or ``none``: DiffPure, the image noised to respaced index N-1 and
        denoised N steps without guidance (D, scale and the norm are then unused; N=0 returns the input).
    """

    N: int = 50
    D: int = 4
    scale: float = 6.0
    guidance_norm: str = "batch"
    lowpass: str = "matrix"
    clip_denoised: bool = True
    guidance: str = "lowpass"

    def __post_init__(self) -> None:
        if self.guidance not in GUIDANCES:
            raise UserError(f"--guidance {self.guidance!r}: use lowpass (DDA) or none (DiffPure)")
        if self.N < (1 if self.guidance == "lowpass" else 0):
            raise UserError(f"--N {self.N} must be at least 1 (the respaced noising index)")
        if self.D < 1 or not math.log2(self.D).is_integer():
            raise UserError(f"--D {self.D}: the low-pass factor must be a power of two (1, 2, 4, 8, ...)")
        if not math.isfinite(self.scale):
            raise UserError(f"--scale {self.scale} must be a finite number")
        if self.guidance_norm not in GUIDANCE_NORMS:
            raise UserError(f"--guidance-norm {self.guidance_norm!r}: use batch (reference) or sample (per image)")
        if self.lowpass not in LOWPASS_KINDS:
            raise UserError(f"--lowpass {self.lowpass!r}: use one of {', '.join(LOWPASS_KINDS)}")

    def check_against(self, image_size: int, num_timesteps: int) -> None:
        """The settings that need the image size and the respaced schedule: D divides the size, N fits."""
        try:
            check_downsample(image_size, self.D)
        except ValueError as e:
            raise UserError(f"--D {self.D} with --image_size {image_size}: {e}") from None
        if not self.N <= num_timesteps:
            raise UserError(
                f"--N {self.N} must be in [1, {num_timesteps}] (the respaced steps of --timestep_respacing)"
            )


@dataclass(frozen=True)
class AlignConfig:
    """One align run over a D/C/W layout (see ``sda.align.layout``) with one projector.

    ``model_flags``: guided-diffusion's model and diffusion flags of the projector (``ADM_FLAGS`` names);
    ``precision`` None: fp16 (the reference's ``convert_to_fp16``) when ``use_fp16`` is set and the run is
    on CUDA, else fp32 (see :meth:`resolved`).
    """

    base_samples: Path
    save_dir: Path
    datatype: str
    image_size: int
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    corruptions: tuple[str, ...] | str = ()  # C only: names, "a,b" or "all"
    severities: tuple[int, ...] | str = (5,)  # C only: 1..5, or "3,5"
    batch_size: int = 10
    seed: int = 0
    num_samples: int | None = None
    lossless: bool = False
    grid: Path | None = None
    precision: str | None = "fp32"
    timestep_respacing: str = "100"
    model_path: str | None = None  # recorded by name in the run key
    model_flags: dict[str, Any] = field(default_factory=dict)
    allow_pickle: bool = False
    device: str | None = None
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = True
    prenoise: bool | None = (
        False  # None: on CUDA; draw all noise before the step loop (same values; static shapes for CUDA graphs)
    )

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise UserError(
                f"--datatype {self.datatype!r}: use D (DiT synthetic set), C (ImageNet-C) or W (ImageNet-W)"
            )
        if self.batch_size < 1:
            raise UserError(f"--batch_size {self.batch_size}: must be at least 1")
        if self.num_samples is not None and self.num_samples < 1:
            raise UserError(f"--num_samples {self.num_samples}: must be at least 1 (or leave it out for all images)")
        if self.precision is not None:
            check_precision(self.precision, PRECISIONS)
        if self.datatype == "C":
            if not self.corruptions:
                raise UserError("--datatype C needs --corruption (a name of ImageNet-C, a comma list, or all)")
            object.__setattr__(self, "corruptions", tuple(parse_corruptions(self.corruptions)))
            object.__setattr__(self, "severities", tuple(parse_severities(self.severities)))
        else:  # the other layouts have no corruption folders
            object.__setattr__(self, "corruptions", ())
            object.__setattr__(self, "severities", ())

    def resolved(self, device_type: str) -> AlignConfig:
        """The config with its precision decided for the device (the run decides it once)."""
        if self.precision is not None:
            return self
        fp16 = self.model_flags.get("use_fp16") and device_type == "cuda"
        return replace(self, precision="fp16" if fp16 else "fp32")

    def on_device(self, device_type: str) -> AlignConfig:
        """The settings decided by the device: precision, and pre-drawn noise on CUDA unless asked otherwise."""
        cfg = self.resolved(device_type)
        return replace(cfg, prenoise=cfg.prenoise if cfg.prenoise is not None else device_type == "cuda")

    # ------------------------------------------------------------------------------------ command line
    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> AlignConfig:
        """Parse ``align/project.py`` flags (SDA's align.sh flags, plus this project's additions)."""
        from sda.models.adm_flags import ADM_FLAG_KEYS

        args = build_parser().parse_args(argv)
        if args.corruption is not None and args.datatype != "C":
            raise UserError(f"--corruption is for --datatype C (got {args.datatype})")
        projection = ProjectionConfig(
            N=args.N,
            D=args.D,
            scale=args.scale,
            guidance_norm=args.guidance_norm,
            lowpass=args.lowpass,
            clip_denoised=args.clip_denoised,
            guidance=args.guidance,
        )
        return cls(
            base_samples=Path(args.base_samples),
            save_dir=Path(args.save_dir),
            datatype=args.datatype,
            image_size=args.image_size,
            projection=projection,
            corruptions=args.corruption or (),
            severities=args.severity,
            batch_size=args.batch_size,
            seed=args.seed,
            num_samples=args.num_samples,
            lossless=args.lossless,
            grid=Path(args.grid) if args.grid else None,
            precision=args.precision,
            timestep_respacing=args.timestep_respacing,
            model_path=args.model_path,
            model_flags={k: getattr(args, k) for k in ADM_FLAG_KEYS},
            allow_pickle=args.allow_pickle,
            device=args.device,
            compile=args.compile,
            compile_mode=args.compile_mode,
            prenoise=args.prenoise,
            channels_last=True if args.channels_last is None else args.channels_last,
        )


def build_parser() -> argparse.ArgumentParser:
    """SDA's align.sh flags as written (the ADM MODEL_FLAGS, --batch_size ... --save_dir) plus additions."""
    from sda.models.adm_flags import add_diffusion_args, add_model_args
    from sda.utils.cli import str2bool
    from sda.utils.weights import ADM_UNCOND_256, PRETRAINED_DIR

    p = argparse.ArgumentParser(prog="align/project.py", description=ALIGN_DESCRIPTION)
    add_model_args(p)  # ADM model flags, defaults = 256x256_diffusion_uncond
    add_diffusion_args(p)  # the reference's model_and_diffusion_defaults
    p.add_argument("--timestep_respacing", default="100", help="respaced DDPM steps (SDA: 100)")
    p.add_argument("--clip_denoised", type=str2bool, default=True)
    # the reference's image_sample.py flags (defaults = SDA's align.sh values)
    p.add_argument("--model_path", default=f"{PRETRAINED_DIR}/{ADM_UNCOND_256}")
    p.add_argument("--base_samples", required=True, help="input root of the layout (see --datatype)")
    p.add_argument(
        "--datatype",
        required=True,
        choices=DATATYPES,
        help="D: <base>/<class>/*.png; C: <base>/<corruption>/<severity>/<wnid>/*; W: <base>/val/<wnid>/*",
    )
    p.add_argument("--corruption", default=None, help="C only: a name, a comma list, or 'all' (the 15)")
    p.add_argument("--severity", default="5", help="C only: 1-5 or a comma list")
    p.add_argument(
        "--save_dir", default="data/", help="outputs go to <save_dir>/{DiT-Syn,ImageNet-C-Syn,ImageNet-W-Syn}"
    )
    p.add_argument("--batch_size", type=int, default=10, help="images per process and step")
    p.add_argument("--num_samples", type=int, default=None, help="cap on images per input set (default: all)")
    p.add_argument("--D", type=int, default=4, help="low-pass downsampling factor")
    p.add_argument("--N", type=int, default=50, help="respaced noising index / number of guided steps")
    p.add_argument("--scale", type=float, default=6.0, help="guidance scale")
    # additions
    p.add_argument(
        "--guidance-norm",
        "--guidance_norm",
        dest="guidance_norm",
        default="batch",
        choices=GUIDANCE_NORMS,
        help="batch: one norm over the whole batch (reference); sample: per-image norms, so an "
        "image's result does not depend on its batch",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="default: fp16 (the reference's convert_to_fp16) when --use_fp16 True on a GPU, else fp32",
    )
    p.add_argument("--lossless", action="store_true", help="write PNG (same stem) instead of the input's format")
    p.add_argument(
        "--allow-pickle",
        "--allow_pickle",
        dest="allow_pickle",
        action="store_true",
        help="load a checkpoint that needs full unpickling (only files you trust)",
    )
    p.add_argument("--seed", type=int, default=0, help="global seed; each image's noise is seeded by its path")
    p.add_argument("--grid", default=None, help="write a PNG of inputs / projections / low-pass views (first batch)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    p.add_argument(
        "--compile-mode",
        default="default",
        choices=("default", "reduce-overhead", "max-autotune"),
        help="torch.compile mode (reduce-overhead: CUDA graphs)",
    )
    p.add_argument(
        "--channels-last",
        "--channels_last",
        dest="channels_last",
        type=str2bool,
        default=None,
        help="channels_last weights/activations (default: True; faster on CUDA and on CPU)",
    )
    p.add_argument(
        "--prenoise",
        type=str2bool,
        default=None,
        help="draw every step's noise before the loop (same values; a static loop for CUDA graphs); default: on CUDA",
    )
    p.add_argument(
        "--guidance",
        default="lowpass",
        choices=GUIDANCES,
        help=f"lowpass: DDA's guided projection; none: DiffPure (noise to N-1, N unguided steps; DiffPure's "
        f"ImageNet setting: --guidance none --timestep_respacing 1000 --N {DIFFPURE_T})",
    )
    p.add_argument(
        "--lowpass",
        default="matrix",
        choices=LOWPASS_KINDS,
        help="matrix: precomputed resize-right operators (fast); resize_right: per-call (reference)",
    )
    return p


ALIGN_DESCRIPTION = (
    "Stage 2 (align): project images into the ADM's synthetic domain with DDA's guided projection. "
    "Every input is projected exactly once over all processes; rerunning the command resumes."
)
