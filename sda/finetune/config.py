"""Stage 3 (finetune) settings: ``FinetuneConfig`` (``finetune/train.py``, mmpretrain's tools/train.py flags) and
``BNAdaptConfig`` (``finetune/bn_adapt.py``). Each flag is declared once, on its field; the flags are checked
in ``__post_init__`` and the mmengine config they produce is checked once, before training, by
``sda.finetune.runner.check_config``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sda.utils.errors import UserError
from sda.utils.options import add_options, option, option_values, parse_options, to_argv

LAUNCHERS = ("none", "pytorch", "slurm")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run: the recipe (a config file or a model name of configs/finetune) and what the command
    line changes in it."""

    config: str = option(kind="positional", help="config file, or a model name of configs/finetune (e.g. SwinT)")
    work_dir: str | None = option(
        None, "logs and per-epoch checkpoints (default work_dirs/<config name>)", names=("--work-dir",)
    )
    resume: str | None = option(
        None,
        "resume from this checkpoint, or without a value from the latest one in the work dir",
        names=("--resume",),
        nargs=("?", "auto"),
    )
    amp: bool = option(False, "automatic mixed precision (GPU only)", kind="switch")
    no_validate: bool = option(
        False, "skip validation (the SDA configs have none)", kind="switch", names=("--no-validate",)
    )
    auto_scale_lr: bool = option(
        False,
        "scale the lr linearly from the config's base batch (auto_scale_lr) to the actual one",
        kind="switch",
        names=("--auto-scale-lr",),
    )
    no_pin_memory: bool = option(
        False, "disable pin_memory in the dataloaders", kind="switch", names=("--no-pin-memory",)
    )
    no_persistent_workers: bool = option(
        False, "disable persistent_workers in the dataloaders", kind="switch", names=("--no-persistent-workers",)
    )
    cfg_options: dict[str, Any] | None = None  # --cfg-options key=value (mmengine's DictAction)
    launcher: str = option("none", "job launcher", choices=LAUNCHERS)
    data_root: str | None = option(
        None, "class-folder training set (default: the config's data_root)", names=("--data-root",)
    )
    final_ckpt: str | None = option(
        None, "where the final weights go (default finetuned_ckpt/<config name>.pth)", names=("--final-ckpt",)
    )
    allow_pickle: bool = option(
        False,
        "allow arbitrary pickled objects in checkpoints (only for files you trust)",
        kind="switch",
        names=("--allow-pickle",),
    )

    plan: bool = option(
        False, "print the work (images, epochs, iterations) and check the inputs, then exit", kind="switch"
    )

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UserError(f"--launcher {self.launcher!r}: use one of {', '.join(LAUNCHERS)}")

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> FinetuneConfig:
        args = build_parser().parse_args(argv)
        return cls(**option_values(cls, args), cfg_options=args.cfg_options)

    def to_argv(self) -> list[str]:
        opts = [f"{k}={v}" for k, v in (self.cfg_options or {}).items()]
        return to_argv(self) + (["--cfg-options", *opts] if opts else [])


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(
        prog="finetune/train.py", description="Fine-tune a classifier (mmpretrain) on a class-folder set."
    )
    add_options(p, FinetuneConfig)
    p.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default=None,
        help="override config entries, e.g. load_from=path train_cfg.max_epochs=15",
    )
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)  # torch.distributed
    return p


@dataclass(frozen=True)
class BNAdaptConfig:
    """BN-adapt: a classifier's BatchNorm statistics re-estimated on an unlabelled image folder."""

    config: str = option(
        kind="positional", help="classifier config (with a test pipeline), e.g. configs/finetune/TinyResNet.py"
    )
    checkpoint: str = option(kind="positional", help="the source model's weights")
    data_root: str = option(
        names=("--data-root",), required=True, help="image folder (<class>/<image>; labels are not used)"
    )
    out: str = option(required=True, help="output checkpoint (.pth)")
    batch_size: int = option(64, names=("--batch-size",))
    device: str = option("cpu", choices=("cpu", "cuda"))
    allow_pickle: bool = option(
        False, "load a legacy pickled checkpoint (trusted files only)", kind="switch", names=("--allow-pickle",)
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: use at least 1")

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> BNAdaptConfig:
        return parse_options(cls, "finetune/bn_adapt.py", BN_ADAPT_DESCRIPTION, argv)

    def to_argv(self) -> list[str]:
        return to_argv(self)


BN_ADAPT_DESCRIPTION = "Re-estimate a classifier's BatchNorm statistics on an unlabelled image folder (BN-adapt)."
