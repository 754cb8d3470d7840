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

from sda.align.lowpass import LOWPASS_KINDS
from sda.diffusion.flags import check_prediction
from sda.utils.errors import UserError
from sda.utils.layout import parse_corruptions, parse_severities
from sda.utils.options import add_options, option, option_values, to_argv
from sda.utils.precision import check_precision
from sda.utils.subset import SubsetOptions
from sda.utils.weights import ADM_UNCOND_256, PRETRAINED_DIR

GUIDANCE_NORMS = ("batch", "sample")
# lowpass: DDA's low-pass guidance; DiffPure (Nie et al., ICML 2022) two ways: sde, the reverse VP-SDE as DDA's first
# author ran it for ImageNet-C (shiyegao/DiffPure, sda.align.diffpure), and none, DiffPure's DDPM runner
GUIDANCES = ("lowpass", "none", "sde")
DIFFPURE_T = 150  # DiffPure's ImageNet t* = 0.15 of the 1000-step schedule (NVlabs/DiffPure run scripts: --t 150)
PRECISIONS = ("fp32", "fp16", "bf16")  # fp16 is the reference's convert_to_fp16(); bf16 runs under autocast
DATATYPES = ("D", "C", "W")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class ProjectionConfig:
    """DDA's guided projection: noise to respaced index ``N``, then ``N`` guided steps.

    ``guidance_norm``: ``batch``, one norm over the whole batch tensor (the reference), or ``sample``, per-image
    norms so an image does not depend on its batch. DiffPure, unguided (D, scale and the norm are then unused;
    N=0 returns the image): ``guidance sde`` is the reverse VP-SDE from t* = N of the 1000-step schedule by
    Euler-Maruyama with step ``sde_dt`` (DDA's DiffPure protocol for ImageNet-C, ``sda.align.diffpure``); ``guidance
    none`` is DiffPure's DDPM runner: the image noised to respaced index N-1 and denoised N steps.
    """

    N: int = option(50, "respaced noising index, also the number of guided steps (SDA: 50 of 100)")
    D: int = option(4, "low-pass downsampling factor, a power of two (SDA: 4)")
    scale: float = option(6.0, "guidance scale (SDA: 6)")
    guidance_norm: str = option(
        "batch",
        "batch: one norm over the whole batch (reference); sample: per-image norms, so an image's result does "
        "not depend on its batch",
        names=("--guidance-norm", "--guidance_norm"),
        choices=GUIDANCE_NORMS,
    )
    lowpass: str = option(
        "matrix",
        "matrix: precomputed resize-right operators (fast); resize_right: per call (reference)",
        choices=LOWPASS_KINDS,
    )
    clip_denoised: bool = option(True, "clip each step's x0 estimate to [-1, 1] (the reference: True)")
    guidance: str = option(
        "lowpass",
        f"lowpass: DDA's guided projection; sde: DiffPure as DDA's author ran it on ImageNet-C (reverse VP-SDE from "
        f"t* = N, --N {DIFFPURE_T}); none: DiffPure's DDPM runner (noise to N-1, N unguided respaced steps; "
        f"--timestep_respacing 1000 --N {DIFFPURE_T})",
        choices=GUIDANCES,
    )
    sde_dt: float = option(
        1e-3, "guidance sde: the Euler-Maruyama step (torchsde's default, as DiffPure)", names=("--sde-dt",)
    )

    def __post_init__(self) -> None:
        if self.guidance not in GUIDANCES:
            raise UserError(f"--guidance {self.guidance!r}: use lowpass (DDA), sde or none (DiffPure)")
        if not 0 < self.sde_dt <= 0.1:
            raise UserError(f"--sde-dt {self.sde_dt}: use a step in (0, 0.1] (DiffPure: 0.001)")
        if self.N < (1 if self.guidance == "lowpass" else 0):
            raise UserError(f"--N {self.N} must be at least 1 (the respaced noising index)")
        if self.D < 1 or not math.log2(self.D).is_integer():
            raise UserError(f"--D {self.D}: the low-pass factor must be a power of two (1, 2, 4, 8, ...)")
        if not math.isfinite(self.scale) or self.scale < 0:
            raise UserError(f"--scale {self.scale} must be a finite number >= 0 (SDA: 6)")
        if self.guidance_norm not in GUIDANCE_NORMS:
            raise UserError(f"--guidance-norm {self.guidance_norm!r}: use batch (reference) or sample (per image)")
        if self.lowpass not in LOWPASS_KINDS:
            raise UserError(f"--lowpass {self.lowpass!r}: use one of {', '.join(LOWPASS_KINDS)}")

    @property
    def steps(self) -> int:
        """Model calls (and per-step noise draws) of one projection: N, or the SDE's Euler-Maruyama steps."""
        if self.guidance == "sde":
            from sda.align.diffpure import forwards_per_image

            return forwards_per_image(self.N, self.sde_dt)
        return self.N

    def check_against(self, image_size: int, num_timesteps: int) -> None:
        """The settings that need the image size and the respaced schedule: D divides the size, N fits (the
        SDE runs on the model's 1000-step schedule, whatever the respacing)."""
        if self.guidance == "sde":
            from sda.align.diffpure import STEPS

            num_timesteps = STEPS
        if image_size % self.D:
            raise UserError(
                f"--D {self.D} with --image_size {image_size}: the size must be divisible by D; choose another D"
            )
        if not self.N <= num_timesteps:
            raise UserError(
                f"--N {self.N} must be in [1, {num_timesteps}] (the respaced steps of --timestep_respacing)"
            )


@dataclass(frozen=True)
class AlignConfig(SubsetOptions):
    """One align run over a D/C/W layout (see ``sda.align.layout``) with one projector.

    ``model_flags``: guided-diffusion's model and diffusion flags of the projector (``ADM_FLAGS`` names; the
    command line declares them from ``sda.models.adm_flags``), ``image_size`` among them.
    """

    base_samples: Path = option(names=("--base_samples",), required=True, help="input root of the layout (--datatype)")
    datatype: str = option(
        required=True,
        choices=DATATYPES,
        help="D: <base>/<class>/*.png; C: <base>/<corruption>/<severity>/<wnid>/*; W: <base>/val/<wnid>/*",
    )
    save_dir: Path = option(
        Path("data"), "outputs go to <save_dir>/{DiT-Syn,ImageNet-C-Syn,ImageNet-W-Syn}", names=("--save_dir",)
    )
    image_size: int = 256  # the projector's (model flag --image_size)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    corruptions: tuple[str, ...] | str = option(
        (), "C only: a name, a comma list, or 'all' (the 15)", names=("--corruption",)
    )
    severities: tuple[int, ...] | str = option((5,), "C only: 1-5 or a comma list", names=("--severity",))
    batch_size: int = option(10, "images per process and step", names=("--batch_size",))
    seed: int = option(0, "global seed; each image's noise is seeded by its path")
    num_samples: int | None = option(
        None,
        "the reference's flag: only the first N files of each input set, in sorted order (the first classes); "
        "for a subset of every class use --per-class",
        names=("--num_samples",),
    )
    lossless: bool = option(False, "write PNG (same stem) instead of the input's format", kind="switch")
    grid: Path | None = option(None, "write a PNG of inputs / projections / low-pass views (first batch)")
    precision: str | None = option(
        None,
        "default: fp16 (the reference's convert_to_fp16) when --use_fp16 True on a GPU, else fp32",
        choices=PRECISIONS,
    )
    timestep_respacing: str = option("100", "respaced DDPM steps (SDA: 100)", names=("--timestep_respacing",))
    model_path: str = option(
        f"{PRETRAINED_DIR}/{ADM_UNCOND_256}", "the projector's checkpoint", names=("--model_path",)
    )
    model_flags: dict[str, Any] = field(default_factory=dict)
    allow_pickle: bool = option(
        False, "load a checkpoint that needs full unpickling (only files you trust)", kind="switch",
        names=("--allow-pickle", "--allow_pickle"),
    )  # fmt: skip
    device: str | None = option(None, "default: cuda when available", choices=("cpu", "cuda"))
    compile: bool = option(False, "torch.compile the UNet", kind="switch")
    compile_mode: str = option(
        "default", "torch.compile mode (reduce-overhead: CUDA graphs)", names=("--compile-mode",), choices=COMPILE_MODES
    )
    channels_last: bool = option(
        True,
        "channels_last weights and activations (faster on CUDA and on CPU)",
        names=("--channels-last", "--channels_last"),
    )
    plan: bool = option(
        False,
        "print the work (images, steps, model forwards) and its time from benchmarks/bench_align.py's measured "
        "speed on this machine ($NGPU processes), then exit without projecting",
        kind="switch",
    )
    prenoise: bool | None = option(
        None,
        "draw every step's noise before the loop (same values; a static loop for CUDA graphs); default: on CUDA",
        kind="bool",
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
        check_prediction(self.model_flags)
        _ = self.subset  # checks --per-class
        if self.projection.guidance == "sde" and self.model_flags:
            steps, schedule = self.model_flags.get("diffusion_steps"), self.model_flags.get("noise_schedule")
            if (steps, schedule) != (1000, "linear"):
                raise UserError(
                    f"--guidance sde needs a model of the 1000-step linear schedule (the VP-SDE's beta 0.1 to 20); "
                    f"got --diffusion_steps {steps} --noise_schedule {schedule}"
                )
        if self.datatype == "C":
            if not self.corruptions:
                raise UserError("--datatype C needs --corruption (a name of ImageNet-C, a comma list, or all)")
            object.__setattr__(self, "corruptions", tuple(parse_corruptions(self.corruptions)))
            object.__setattr__(self, "severities", tuple(parse_severities(self.severities)))
        elif self.corruptions:
            raise UserError(f"--corruption is for --datatype C (got {self.datatype})")
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
        model_flags = {k: getattr(args, k) for k in ADM_FLAG_KEYS}
        projection = ProjectionConfig(**option_values(ProjectionConfig, args))
        return cls(
            **option_values(cls, args), image_size=args.image_size, projection=projection, model_flags=model_flags
        )

    def to_argv(self) -> list[str]:
        """``align/project.py``'s flags for this config (the projector's model flags, then the settings)."""
        model = [a for k, v in self.model_flags.items() for a in (f"--{k}", str(v))]
        return model + to_argv(self.projection) + to_argv(self)


def build_parser() -> argparse.ArgumentParser:
    """SDA's align.sh flags as written (the ADM MODEL_FLAGS, --batch_size ... --save_dir) plus additions."""
    from sda.diffusion.flags import add_diffusion_args
    from sda.models.adm_flags import add_model_args

    p = argparse.ArgumentParser(prog="align/project.py", description=ALIGN_DESCRIPTION)
    add_model_args(p)  # ADM model flags, defaults = 256x256_diffusion_uncond
    add_diffusion_args(p)  # the reference's model_and_diffusion_defaults
    add_options(p, ProjectionConfig)
    add_options(p, AlignConfig)
    return p


ALIGN_DESCRIPTION = (
    "Stage 2 (align): project images into the ADM's synthetic domain with DDA's guided projection. "
    "Every input is projected exactly once over all processes; rerunning the command resumes."
)
