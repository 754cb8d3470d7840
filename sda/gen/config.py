"""Stage 1 (gen) settings: ``GenConfig``, its command-line flags (DiT's ``sample_ddp.py`` names), validated once."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sda.diffusion.flags import check_prediction
from sda.models.dit import DiT_models, is_dit_name
from sda.utils.errors import UserError
from sda.utils.options import add_options, option, option_values, to_argv
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

    model: str = option(
        "DiT-XL/2", f"{', '.join(DiT_models)}, a custom DiT-d<depth>w<width>h<heads>/<patch>, or {ADM_MODEL}"
    )
    image_size: int = option(
        256,
        "output size in pixels (the model's input size with --no-vae; latent = size / 8 otherwise)",
        names=("--image-size", "--image_size"),
    )
    num_classes: int = option(1000, names=("--num-classes",))
    cfg_scale: float = option(1.0, "classifier-free guidance; 1.0 = none (SDA)", names=("--cfg-scale",))
    cfg_channels: str = option(
        "3",
        "guide the first 3 output channels (official DiT) or all epsilon channels (diffusers)",
        names=("--cfg-channels",),
        choices=("3", "all"),
    )
    num_sampling_steps: int = option(DEFAULT_STEPS, "DDPM steps (the paper: 250)", names=("--num-sampling-steps",))
    global_seed: int = option(0, names=("--global-seed",))
    ckpt: str | None = option(
        None, f"model checkpoint (default for DiT-XL/2: {PRETRAINED_DIR}/DiT-XL-2-<size>x<size>.pt)"
    )
    allow_pickle: bool = option(
        False, "load a checkpoint with arbitrary pickles (trusted)", kind="switch", names=("--allow-pickle",)
    )
    learn_sigma: bool = option(
        True, "DiT predicts the variance too (all official and DiT-recipe checkpoints)", kind="toggle",
        names=("--learn-sigma",),
    )  # fmt: skip
    vae: str = option("ema", choices=("ema", "mse"))
    vae_path: str | None = option(
        None,
        f"local diffusers AutoencoderKL folder or single file (default {PRETRAINED_DIR}/sd-vae-ft-<vae>)",
        names=("--vae-path",),
    )
    no_vae: bool = option(False, "pixel-space model: no VAE, 3 channels", kind="switch", names=("--no-vae",))
    clip_denoised: str = option(
        "auto",
        "clip each step's predicted x0 to [-1, 1]; auto: off in latent space (official DiT), on in pixel space "
        "(guided-diffusion's sampler)",
        names=("--clip-denoised",),
        choices=("auto", "true", "false"),
    )
    sample_dir: str = option(
        "samples", "images go to <sample-dir>/<folder naming the settings>", names=("--sample-dir",)
    )
    out_dir: str | None = option(
        None, "write the class folders directly here (overrides --sample-dir)", names=("--out-dir",)
    )
    images_per_class: int = option(50, names=("--images-per-class",))
    classes: str | None = option(None, "e.g. 0-999 or 3,7,9 or 0-4,10 (default: all classes)")
    per_proc_batch_size: int = option(32, names=("--per-proc-batch-size",))
    tf32: bool = option(True, "TF32 matmuls on Ampere+ GPUs (the reference's default)", kind="toggle")
    precision: str = option(
        "fp32", "fp32 (reference); bf16/fp16 autocast; fp64 for bit-exact checks on CPU", choices=PRECISIONS
    )
    device: str | None = option(None, "default: CUDA when available", choices=("cpu", "cuda"))
    grid_size: int = option(8, "classes x images in the sample grid (0: no grid)", names=("--grid-size",))
    plan: bool = option(
        False, "print the work (images, model forwards) and the output folder, check the inputs, then exit",
        kind="switch",
    )  # fmt: skip
    adm: dict[str, Any] | None = None
    class_list: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.model != ADM_MODEL and not is_dit_name(self.model):
            raise UserError(
                f"--model {self.model!r}: use one of {', '.join(DiT_models)}, "
                f"DiT-d<depth>w<width>h<heads>/<patch> or {ADM_MODEL}"
            )
        check_precision(self.precision, PRECISIONS)
        if self.clip_denoised not in ("auto", "true", "false"):
            raise UserError(f"--clip-denoised {self.clip_denoised!r}: use auto, true or false")
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
        check_prediction(adm)
        if not adm.get("class_cond"):
            raise UserError(
                "gen needs a class-conditional ADM; pass --class_cond True with a class-conditional checkpoint"
            )

    @property
    def clip(self) -> bool:
        """``--clip-denoised`` resolved: auto clips in pixel space (guided-diffusion), not in latent space (DiT)."""
        return self.no_vae if self.clip_denoised == "auto" else self.clip_denoised == "true"

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
        """The reference's folder name (model, checkpoint, size, vae, cfg, seed), plus non-default settings. The
        checkpoint part names the file used, the default one included (SDA's gen.sh names it with --ckpt)."""
        model = self.model.replace("/", "-")
        ckpt = Path(self.checkpoint).name.replace(".pt", "")
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
        values = {**asdict(self), "clip_denoised": self.clip}
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
        """Parse ``gen/sample.py`` flags; with ``--model ADM`` guided-diffusion's model flags follow (their
        ``--image_size`` is ``--image-size``: one setting, two spellings)."""
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        values = option_values(cls, args)
        if args.model == ADM_MODEL:
            adm = {**vars(_adm_parser().parse_args(rest)), "image_size": args.image_size}
            values.update(adm=adm, no_vae=True, learn_sigma=adm["learn_sigma"])
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return cls(**values)

    def to_argv(self) -> list[str]:
        """``gen/sample.py``'s flags for this config (the ADM's model flags after ``--model ADM``)."""
        adm = [a for k, v in (self.adm or {}).items() if k != "image_size" for a in (f"--{k}", str(v))]
        skip = ("no_vae", "learn_sigma") if self.is_adm else ()  # implied by --model ADM
        return to_argv(self, skip=skip) + adm


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gen/sample.py",
        description="Stage 1 (gen): class-conditional images <root>/<class:04d>/<index:06d>.png from DiT or ADM.",
        epilog="With --model ADM, guided-diffusion's model flags (--num_channels 256 --class_cond True ...) "
        "follow; their defaults are the released 256x256 class-conditional model's.",
    )
    add_options(p, GenConfig)
    return p


def _adm_parser() -> argparse.ArgumentParser:
    """guided-diffusion's model flags and the diffusion flags gen uses, defaults: the 256 px conditional model."""
    from sda.diffusion.flags import add_diffusion_args
    from sda.models.adm_flags import ADM_FLAGS, add_model_args

    defaults = ADM_FLAGS["256_cond"]
    p = argparse.ArgumentParser(prog="gen/sample.py --model ADM", add_help=False)
    add_model_args(p, defaults=defaults, skip=("image_size",))  # --image-size / --image_size is gen's own
    add_diffusion_args(p, defaults=defaults)
    return p
