"""Train a class-conditional generator on a class-folder image set (DiT's train.py, one process).

    python gen/train.py --model ADM --config configs/mini/glyphs32/adm_cond.json \\
        --data_dir data/mini/glyphs32/train --results_dir results/mini/glyphs32/train/adm_cond \\
        --export assets/mini/glyphs32/adm_cond.pt
    python gen/train.py --model DiT-S/4 --image_size 32 --data_dir data/mini/glyphs32/train --results_dir results/dit

``--model ADM`` is guided-diffusion's UNet with ``class_cond True`` (its model flags apply; with
``--class_dropout p`` it gets one more label row, the null class, for classifier-free guidance);
``--model DiT-*`` is a pixel-space DiT (in_channels 3, learned sigma, class dropout 0.1, null class
= num_classes). The class count defaults to the number of class folders. Labels follow the sorted
folder order, as gen/sample.py writes them. Checkpoints: ``<results_dir>/checkpoints/<step>.pt`` in
DiT's training format (resume by running the same command); ``--export`` writes the EMA weights.
"""

from __future__ import annotations

import argparse
import os

from torch import nn

from sda.diffusion.training import TrainRun, add_train_args, run_training
from sda.models.adm_flags import MODEL_FLAG_DEFAULTS, add_model_args, create_model, model_kwargs_from_args
from sda.models.dit import build_dit
from sda.utils.cli import parse_with_config, run_main
from sda.utils.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ADM", help="ADM (class-conditional UNet) or a DiT name such as DiT-S/4")
    p.add_argument("--num_classes", type=int, default=None, help="default: the number of class folders")
    add_model_args(p, defaults={**MODEL_FLAG_DEFAULTS, "class_cond": True, "learn_sigma": True})
    add_train_args(p)
    p.add_argument(
        "--class_dropout",
        type=float,
        default=0.0,
        help="ADM: share of training labels replaced by a null class (an extra label row, index num_classes), "
        "so that gen/sample.py can use --cfg-scale; DiT models drop 10%% of labels by construction",
    )
    return p


def build_model(args: argparse.Namespace) -> nn.Module:
    if args.model == "ADM":
        if not args.class_cond:
            raise UserError("gen/train.py --model ADM trains a class-conditional UNet; drop --class_cond False")
        kwargs = model_kwargs_from_args(args)
        if args.class_dropout > 0:  # one more label row: the null class
            kwargs["num_classes"] = args.num_classes + 1
        return create_model(**kwargs)
    try:
        return build_dit(
            args.model,
            input_size=args.image_size,
            in_channels=3,
            num_classes=args.num_classes,
            learn_sigma=args.learn_sigma,
        )
    except ValueError as e:
        raise UserError(f"--model {args.model}: {e}") from None


def main(argv: list[str] | None = None) -> dict:
    args = parse_with_config(build_parser(), argv)
    if args.num_classes is None and args.data_dir is not None:
        args.num_classes = sum(d.is_dir() for d in os.scandir(args.data_dir)) if os.path.isdir(args.data_dir) else 0
        if args.num_classes == 0:
            raise UserError(f"no class folders under {args.data_dir}; expected <data_dir>/<class>/<image>")
    if not 0.0 <= args.class_dropout < 1.0:
        raise UserError(f"--class_dropout {args.class_dropout}: use a share in [0, 1)")
    if args.class_dropout > 0 and args.model != "ADM":
        raise UserError(f"--class_dropout is for --model ADM; {args.model} drops 10% of labels by construction")
    run = TrainRun.from_args(args, class_cond=True)
    return run_training(run, lambda: build_model(args))


if __name__ == "__main__":
    run_main(main)
