"""Run a diffusion training (``gen/train.py``, ``align/train.py``): seed, build, train, export."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sda.diffusion.training import export_ema, load_class_folder, train
from sda.training.config import GenTrainConfig, TrainConfig
from sda.utils.errors import UserError


def build_generator(cfg: GenTrainConfig) -> nn.Module:
    """``gen/train.py``'s model: a class-conditional ADM (with a null-class row for CFG when labels are dropped)
    or a pixel-space DiT."""
    from sda.models.adm_flags import create_model, model_kwargs
    from sda.models.dit import build_dit

    if cfg.model == "ADM":
        kwargs = model_kwargs(cfg.model_flags)
        kwargs["num_classes"] = cfg.num_classes + (1 if cfg.class_dropout > 0 else 0)  # + the null class
        return create_model(**kwargs)
    try:
        return build_dit(
            cfg.model,
            input_size=cfg.image_size,
            in_channels=3,
            num_classes=cfg.num_classes,
            learn_sigma=cfg.learn_sigma,
        )
    except ValueError as e:
        raise UserError(f"--model {cfg.model}: {e}") from None


def run_training(cfg: TrainConfig, build_model: Callable[[], nn.Module]) -> dict[str, Any]:
    """Seed, build the model, load the data, train to ``steps``, optionally export the EMA weights.

    The model is built after ``torch.manual_seed(seed)``, so its initial weights, like every later
    draw, follow from the seed: the same command gives the same checkpoints.
    """
    from sda.diffusion import create_diffusion
    from sda.utils.dist import init_distributed
    from sda.utils.io import write_json

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model()
    device = init_distributed(cfg.device).device
    x, y, classes = load_class_folder(cfg.data_dir, cfg.image_size)
    print(
        f"{len(x)} training images in {len(classes)} classes from {cfg.data_dir}; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    diffusion = create_diffusion("", learn_sigma=cfg.learn_sigma, **cfg.diffusion)
    write_json(cfg.results_dir / "args.json", cfg.flags)  # the resolved settings next to the results
    gen = isinstance(cfg, GenTrainConfig)
    settings = cfg.settings(cfg.class_dropout, cfg.num_classes) if gen else cfg.settings()
    out = train(
        model.to(device),
        diffusion,
        x,
        y if cfg.class_cond else None,
        settings,
        cfg.results_dir / "checkpoints",
        argparse.Namespace(**cfg.flags),
    )
    if cfg.export and out["checkpoint"] is not None:
        export_ema(out["checkpoint"], cfg.export)
        print(f"wrote EMA weights of step {out['step']} to {cfg.export}")
    return out
