"""The settings of a diffusion training run (``gen/train.py``, ``align/train.py``), declared once on typed configs.

Flags use guided-diffusion's names; ``--config FILE`` (JSON) supplies defaults, which command-line flags override.
The model flags (``sda.models.adm_flags``) and the diffusion flags a training run takes
(``TRAIN_DIFFUSION_FLAGS`` of ``sda.diffusion.flags``) are kept as dicts beside the options.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sda.diffusion.flags import add_diffusion_args, check_prediction
from sda.diffusion.training import TrainSettings
from sda.models.adm_flags import MODEL_FLAG_DEFAULTS, add_model_args
from sda.utils.cli import parse_with_config
from sda.utils.errors import UserError
from sda.utils.options import add_options, option, option_values

# The diffusion flags a training run takes (guided-diffusion's names).
TRAIN_DIFFUSION_FLAGS = ("diffusion_steps", "noise_schedule", "rescale_learned_sigmas", "predict_xstart", "predict_v")


@dataclass(frozen=True)
class TrainConfig:
    """One diffusion training run: data, model, optimisation settings and outputs."""

    config: str | None = option(None, "JSON file of flag defaults (command-line flags win)")
    data_dir: Path | None = option(None, "class-folder training images <data_dir>/<class>/<image>")
    results_dir: Path | None = option(None, "checkpoints go to <results_dir>/checkpoints/<step>.pt")
    export: Path | None = option(None, "write the final EMA weights here as a plain state dict")
    steps: int = option(1000, "total optimisation steps (resume continues to it)")
    batch_size: int = option(64)
    lr: float = option(1e-3)
    weight_decay: float = option(0.0)
    warmup: int = option(0, "linear learning-rate warm-up steps")
    decay_steps: int = option(0, "linear learning-rate decay to 0 at the end")
    ema_rate: float = option(0.999)
    seed: int = option(0)
    ckpt_every: int = option(500)
    log_every: int = option(50)
    threads: int = option(0, "torch CPU threads (0: torch's default)")
    device: str | None = option(None, "default: cuda when available", choices=("cpu", "cuda"))
    model_flags: dict[str, Any] = field(default_factory=dict)  # sda.models.adm_flags names
    diffusion: dict[str, Any] = field(default_factory=dict)  # TRAIN_DIFFUSION_FLAGS values
    flags: dict[str, Any] = field(default_factory=dict)  # every flag, stored with the checkpoints as DiT does

    def __post_init__(self) -> None:
        for name in ("data_dir", "results_dir"):
            if getattr(self, name) is None:
                raise UserError(f"--{name} is required (on the command line or in --config)")
        if self.steps < 1 or self.batch_size < 1 or self.ckpt_every < 1 or self.log_every < 1:
            raise UserError("--steps, --batch_size, --ckpt_every and --log_every must be positive")
        check_prediction(self.diffusion)

    @property
    def image_size(self) -> int:
        return self.model_flags["image_size"]

    @property
    def class_cond(self) -> bool:
        return bool(self.model_flags.get("class_cond"))

    @property
    def learn_sigma(self) -> bool:
        return bool(self.model_flags.get("learn_sigma"))

    def settings(self, class_dropout: float = 0.0, num_classes: int = 0) -> TrainSettings:
        return TrainSettings(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup=self.warmup,
            decay_steps=self.decay_steps,
            ema_decay=self.ema_rate,
            seed=self.seed,
            ckpt_every=self.ckpt_every,
            log_every=self.log_every,
            class_dropout=class_dropout,
            num_classes=num_classes,
        )

    @classmethod
    def parser(cls, model_defaults: dict[str, Any], description: str = "") -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_model_args(p, defaults=model_defaults)
        add_diffusion_args(p, TRAIN_DIFFUSION_FLAGS)
        add_options(p, cls)
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace, **extra: Any) -> TrainConfig:
        values = vars(args)
        model_flags = {k: values[k] for k in MODEL_FLAG_DEFAULTS}
        diffusion = {k: values[k] for k in TRAIN_DIFFUSION_FLAGS}
        flags = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}  # JSON, and safe to unpickle
        return cls(**option_values(cls, args), model_flags=model_flags, diffusion=diffusion, flags=flags, **extra)


@dataclass(frozen=True)
class GenTrainConfig(TrainConfig):
    """``gen/train.py``: a class-conditional generator, ADM (guided-diffusion's UNet) or a pixel-space DiT."""

    model: str = option("ADM", "ADM (class-conditional UNet) or a DiT name such as DiT-S/4")
    num_classes: int | None = option(None, "default: the number of class folders")
    class_dropout: float = option(
        0.0,
        "ADM: share of training labels replaced by a null class (an extra label row, index num_classes), so that "
        "gen/sample.py can use --cfg-scale; DiT models drop 10%% of labels by construction",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.class_dropout < 1.0:
            raise UserError(f"--class_dropout {self.class_dropout}: use a share in [0, 1)")
        if self.class_dropout > 0 and self.model != "ADM":
            raise UserError(f"--class_dropout is for --model ADM; {self.model} drops 10% of labels by construction")
        if self.model == "ADM" and not self.class_cond:
            raise UserError("gen/train.py --model ADM trains a class-conditional UNet; drop --class_cond False")
        if self.num_classes is None:  # the class folders
            n = sum(d.is_dir() for d in os.scandir(self.data_dir)) if os.path.isdir(self.data_dir) else 0
            if n == 0:
                raise UserError(f"no class folders under {self.data_dir}; expected <data_dir>/<class>/<image>")
            object.__setattr__(self, "num_classes", n)
            object.__setattr__(self, "flags", {**self.flags, "num_classes": n})  # stored with the checkpoints

    @classmethod
    def build_parser(cls, description: str = "") -> argparse.ArgumentParser:
        return cls.parser({**MODEL_FLAG_DEFAULTS, "class_cond": True, "learn_sigma": True}, description)

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> GenTrainConfig:
        return cls.from_args(parse_with_config(cls.build_parser(), argv))


def align_train_parser(description: str = "") -> argparse.ArgumentParser:
    return TrainConfig.parser(MODEL_FLAG_DEFAULTS, description)


def align_train_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """``align/train.py``: the unconditional ADM projector."""
    cfg = TrainConfig.from_args(parse_with_config(align_train_parser(), argv))
    if cfg.class_cond:
        raise UserError("align/train.py trains the unconditional model; use gen/train.py --model ADM for class_cond")
    return cfg
