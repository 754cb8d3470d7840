"""Stage 2 (align): project images into the ADM's synthetic domain with DDA's guided projection.

Accepts SDA's align.sh flags as written (the ADM MODEL_FLAGS, --batch_size --num_samples
--timestep_respacing --model_path --base_samples --D --N --scale --datatype --corruption --severity
--save_dir), launched with torchrun instead of mpiexec:

    torchrun --nproc_per_node 8 align/project.py $MODEL_FLAGS --batch_size 10 --timestep_respacing 100 \\
        --model_path pretrained_ckpt/256x256_diffusion_uncond.pt --base_samples data/ImageNet-C \\
        --D 4 --N 50 --scale 6 --datatype C --corruption gaussian_noise --severity 5 --save_dir data/

Every input is projected exactly once over all processes; rerunning the command resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sda.align_data import CORRUPTIONS, DATATYPES, project_folder
from sda.diffusion import create_diffusion
from sda.models.unet import add_model_args, create_model, load_adm_checkpoint, model_kwargs_from_args, str2bool
from sda.projection import PRECISIONS, prepare_model
from sda.utils import dist
from sda.utils.cli import run_main
from sda.utils.errors import UserError
from sda.utils.progress import log


def _add(parser: argparse.ArgumentParser, *names: str, **kwargs) -> None:
    """Add an option unless the model-flag helper already did (it may grow the diffusion flags)."""
    if not any(n in parser._option_string_actions for n in names):
        parser.add_argument(*names, **kwargs)


def create_argparser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)  # ADM model flags, defaults = 256x256_diffusion_uncond
    # diffusion flags of the reference's model_and_diffusion_defaults
    _add(p, "--diffusion_steps", type=int, default=1000)
    _add(p, "--noise_schedule", default="linear")
    _add(p, "--timestep_respacing", default="100", help="respaced DDPM steps (SDA: 100)")
    _add(p, "--use_kl", type=str2bool, default=False)
    _add(p, "--predict_xstart", type=str2bool, default=False)
    _add(p, "--predict_v", type=str2bool, default=False, help="v-prediction model (an extension)")
    _add(p, "--rescale_timesteps", type=str2bool, default=False)
    _add(p, "--rescale_learned_sigmas", type=str2bool, default=False)
    _add(p, "--clip_denoised", type=str2bool, default=True)
    # the reference's image_sample.py flags (defaults = SDA's align.sh values)
    p.add_argument("--model_path", default="pretrained_ckpt/256x256_diffusion_uncond.pt")
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
        choices=("batch", "sample"),
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
        "--channels-last",
        "--channels_last",
        dest="channels_last",
        type=str2bool,
        default=None,
        help="channels_last weights/activations (default: True; faster on CUDA and on CPU)",
    )
    p.add_argument(
        "--lowpass",
        default="matrix",
        choices=("matrix", "resize_right"),
        help="matrix: precomputed resize-right operators (fast); resize_right: per-call (reference)",
    )
    return p


def main() -> None:
    args = create_argparser().parse_args()
    info = dist.init_distributed(args.device)
    try:
        if args.corruption is not None and args.datatype != "C":
            raise UserError(f"--corruption is for --datatype C (got {args.datatype})")
        if args.datatype == "C" and args.corruption is None:
            raise UserError(f"--datatype C needs --corruption (one of {', '.join(CORRUPTIONS)}, a comma list, or all)")
        precision = args.precision or ("fp16" if args.use_fp16 and info.device.type == "cuda" else "fp32")
        if args.use_fp16 and precision != "fp16":
            log(
                f"align: --use_fp16 True but running in {precision} (fp16 is used on CUDA only unless --precision fp16)"
            )
        channels_last = True if args.channels_last is None else args.channels_last

        model = create_model(**model_kwargs_from_args(args))
        load_adm_checkpoint(model, args.model_path, allow_pickle=args.allow_pickle)
        model = prepare_model(model.to(info.device), precision, channels_last=channels_last, compile=args.compile)
        try:
            diffusion = create_diffusion(
                args.timestep_respacing,
                noise_schedule=args.noise_schedule,
                use_kl=args.use_kl,
                predict_xstart=args.predict_xstart,
                predict_v=args.predict_v,
                learn_sigma=args.learn_sigma,
                rescale_learned_sigmas=args.rescale_learned_sigmas,
                diffusion_steps=args.diffusion_steps,
                rescale_timesteps=args.rescale_timesteps,
            )
        except ValueError as e:
            raise UserError(f"diffusion flags: {e}") from None
        settings = {
            "timestep_respacing": args.timestep_respacing,
            "model": Path(args.model_path).name,
            "precision": precision,
            "clip_denoised": args.clip_denoised,
            "datatype": args.datatype,
        }
        summary = project_folder(
            model,
            diffusion,
            base_samples=args.base_samples,
            save_dir=args.save_dir,
            datatype=args.datatype,
            image_size=args.image_size,
            corruptions=args.corruption,
            severities=args.severity,
            batch_size=args.batch_size,
            N=args.N,
            D=args.D,
            scale=args.scale,
            guidance_norm=args.guidance_norm,
            seed=args.seed,
            num_samples=args.num_samples,
            lossless=args.lossless,
            grid=args.grid,
            lowpass=args.lowpass,
            rank=info.rank,
            world_size=info.world_size,
            device=info.device,
            settings=settings,
            clip_denoised=args.clip_denoised,
        )
        log(f"align: done, {summary['images']} images in {', '.join(summary['out_dirs'])}")
    finally:
        dist.cleanup()


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    run_main(main)
