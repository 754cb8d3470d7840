"""Train the unconditional ADM UNet that the align stage projects with (guided-diffusion's image_train).

    python align/train.py --config configs/mini/glyphs32/adm_uncond.json --data_dir data/mini/glyphs32/train \\
        --results_dir results/mini/glyphs32/train/adm_uncond --export assets/mini/glyphs32/adm_uncond.pt

Model flags are guided-diffusion's (``--image_size 32 --num_channels 32 ...``); the exported file is
the EMA state dict, loadable by ``align/project.py --model_path`` with the same model flags. The
training checkpoints (``<results_dir>/checkpoints/<step>.pt``, DiT's {"model","ema","opt","args"}
format) let an interrupted run resume: run the same command again.
"""

from __future__ import annotations

import argparse

from sda.diffusion.training import TrainRun, add_train_args, run_training
from sda.models.adm_flags import MODEL_FLAG_DEFAULTS, add_model_args, create_model, model_kwargs_from_args
from sda.utils.cli import parse_with_config, run_main
from sda.utils.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, defaults=MODEL_FLAG_DEFAULTS)
    add_train_args(p)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parse_with_config(build_parser(), argv)
    if args.class_cond:
        raise UserError("align/train.py trains the unconditional model; use gen/train.py --model ADM for class_cond")
    return run_training(
        TrainRun.from_args(args, class_cond=False), lambda: create_model(**model_kwargs_from_args(args))
    )


if __name__ == "__main__":
    run_main(main)
