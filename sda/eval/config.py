"""Stage 4 (eval) settings: ``EvalConfig``, built from the reference's command line and validated once."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sda.eval import ensemble
from sda.eval.tta import METHODS as TTA_METHODS
from sda.eval.tta import TTAConfig
from sda.utils.cli import int_list
from sda.utils.errors import UserError
from sda.utils.layout import parse_corruptions, parse_severities
from sda.utils.precision import amp_precision

DATATYPES = ("C", "W")
SINGLE_MODELS = ("original", "finetuned")


DIFFPURE = "diffpure"  # the single model on DiffPure's purification of the raw image (a third image)
COLUMNS = (*ensemble.MODES, DIFFPURE)


def parse_modes(text: str | list[str]) -> list[str]:
    """``"sda,sum"`` or ``"all"`` -> the ensemble modes (and ``diffpure``), unique, in the given order;
    ``all`` means the 12 ensemble modes."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for n in (x.strip() for x in names):
        if n == "all":
            out.extend(m for m in ensemble.MODES if m not in out)
        elif n not in COLUMNS:
            raise UserError(f"unknown ensemble mode {n!r}; valid: all, {', '.join(COLUMNS)}")
        elif n not in out:
            out.append(n)
    return out


def parse_tta(text: str | None) -> tuple[str, ...]:
    """``"norm,tent,memo"`` -> the adaptation baselines (empty: none)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for n in names:
        if n not in TTA_METHODS:
            raise UserError(f"--tta {n!r}: use a comma list of {', '.join(TTA_METHODS)}")
    return tuple(dict.fromkeys(names))


def needs_projection(modes: list[str]) -> bool:
    return any(m not in ("first", DIFFPURE) for m in modes)


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: the models, the target roots and subsets, the modes and the run settings.

    ``checkpoint`` is the fine-tuned model (the only one without ``originckpt``); ``originckpt`` the
    original (source) model. ``single_model`` picks the model of every mode but ``sda`` (default: the
    original, as the paper's Source and DDA columns).
    """

    config: str
    checkpoint: str
    data_prefix1: str
    originckpt: str | None = None
    data_prefix2: str | None = None
    datatype: str = "C"
    corruptions: tuple[str, ...] | str = "all"
    severities: tuple[int, ...] | str = (5,)
    modes: tuple[str, ...] | str | None = None  # None: first,second,sum[,sda]
    single_model: str = "original"
    out: str | None = None
    allow_missing: bool = False
    batch_size: int = 64
    num_workers: int = 4
    amp: bool = False
    device: str | None = None
    launcher: str = "none"
    allow_pickle: bool = False
    cfg_options: dict[str, Any] | None = None
    metrics: tuple[str, ...] = ("accuracy",)
    data_prefix_diffpure: str | None = None  # DiffPure's purified images (align --guidance none)
    tta: TTAConfig = field(default_factory=TTAConfig)  # norm / tent / memo on the raw images
    seed: int = 0  # the order of the adaptation streams, MEMO's augmentations, the --max-per-corruption draw
    max_per_corruption: int | None = None
    single: str = field(init=False)

    def __post_init__(self) -> None:
        if any(m != "accuracy" for m in self.metrics):
            raise UserError(f"--metrics {' '.join(self.metrics)}: only 'accuracy' is supported")
        if self.batch_size < 1 or self.num_workers < 0:
            raise UserError("--batch-size must be positive and --num-workers at least 0")
        if self.datatype not in DATATYPES:
            raise UserError(f"--datatype must be C or W, got {self.datatype!r}")
        if not Path(self.config).is_file():
            raise UserError(f"config {self.config} not found; use one of configs/eval/*.py")
        default = "first,second,sum,sda" if self.originckpt else "first,second,sum"
        modes = tuple(parse_modes(self.modes or default))
        if "sda" in modes and not self.originckpt:
            raise UserError("the sda mode needs --originckpt (the original model scores the raw images)")
        if needs_projection(list(modes)) and not self.data_prefix2:
            needy = ", ".join(m for m in modes if m not in ("first", DIFFPURE))
            raise UserError(f"modes {needy} need --data_prefix2 (projected root)")
        if DIFFPURE in modes and not self.data_prefix_diffpure:
            raise UserError("the diffpure column needs --data_prefix_diffpure (align's output with --guidance none)")
        if self.max_per_corruption is not None and self.max_per_corruption < 1:
            raise UserError(f"--max-per-corruption {self.max_per_corruption}: use at least 1 (or leave it out)")
        if self.data_prefix2 and Path(self.data_prefix1).resolve() == Path(self.data_prefix2).resolve():
            raise UserError(
                f"--data_prefix1 and --data_prefix2 are the same folder ({self.data_prefix1}): the projected images "
                "must be align's output (e.g. data/ImageNet-C-Syn), not the raw set"
            )
        object.__setattr__(self, "modes", modes)
        if self.datatype == "C":
            object.__setattr__(self, "corruptions", tuple(parse_corruptions(self.corruptions)))
            object.__setattr__(self, "severities", tuple(parse_severities(self.severities)))
        object.__setattr__(self, "single", self.single_model if self.originckpt else "finetuned")

    @property
    def single_checkpoint(self) -> str:
        return self.originckpt if self.single == "original" else self.checkpoint

    @property
    def with_projection(self) -> bool:
        return needs_projection(list(self.modes))

    @property
    def views(self) -> tuple[str, ...]:
        """The images each item needs: raw always, the projection and DiffPure's purification when scored."""
        return ("raw",) + (("proj",) if self.with_projection else ()) + (("pur",) if DIFFPURE in self.modes else ())

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns: the modes, then the adaptation baselines."""
        return (*self.modes, *self.tta.methods)

    def precision(self, device_type: str) -> str:
        """fp32, or with ``--amp`` the device's autocast precision (fp16 on CUDA, bf16 on a CPU)."""
        import torch

        return amp_precision(torch.device(device_type)) if self.amp else "fp32"

    # ------------------------------------------------------------------------------------ command line
    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> EvalConfig:
        """Parse the reference's ``test_ensemble.py`` command line (plus this project's additions)."""
        args = build_parser().parse_args(argv)
        return cls(
            config=args.config,
            checkpoint=args.checkpoint,
            data_prefix1=args.data_prefix1,
            originckpt=args.originckpt,
            data_prefix2=args.data_prefix2,
            datatype=args.datatype,
            corruptions=args.corruption,
            severities=tuple(args.severity),
            modes=args.ensemble,
            single_model=args.single_model,
            out=args.out,
            allow_missing=args.allow_missing,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            amp=args.amp,
            device=args.device,
            launcher=args.launcher,
            allow_pickle=args.allow_pickle,
            cfg_options=args.cfg_options,
            metrics=tuple(args.metrics),
            data_prefix_diffpure=args.data_prefix_diffpure,
            tta=tta_config(args),
            seed=args.seed,
            max_per_corruption=args.max_per_corruption,
        )


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(
        prog="eval/evaluate.py", description="SDA / DDA ensemble evaluation on ImageNet-C / ImageNet-W layouts"
    )
    p.add_argument("config", help="eval config (configs/eval/<Model>.py)")
    p.add_argument("checkpoint", help="fine-tuned checkpoint (the only model when --originckpt is not given)")
    p.add_argument("--originckpt", default=None, help="original (source) checkpoint; needed by the sda mode")
    p.add_argument(
        "--data_prefix1",
        "--data-prefix1",
        dest="data_prefix1",
        required=True,
        help="raw target root (ImageNet-C or ImageNet-W)",
    )
    p.add_argument(
        "--data_prefix2",
        "--data-prefix2",
        dest="data_prefix2",
        default=None,
        help="projected root (same layout and file names)",
    )
    p.add_argument("--datatype", default="C", choices=["C", "W"])
    p.add_argument("--corruption", default="all", help="'all', a name or a comma list (datatype C)")
    p.add_argument("--severity", type=int_list, default=[5], help="5 or a comma list like 1,2,3")
    p.add_argument(
        "--ensemble",
        default=None,
        help="mode or comma list or 'all' (default: first,second,sum[,sda]): " + ", ".join(ensemble.MODES),
    )
    p.add_argument(
        "--single-model",
        choices=["original", "finetuned"],
        default="original",
        help="model of every mode but sda when --originckpt is given (default: original, as the "
        "paper's Source/DDA columns; 'finetuned' = the reference's positional checkpoint)",
    )
    p.add_argument("--metrics", nargs="+", default=["accuracy"], help="only 'accuracy' (top-1 and top-5)")
    p.add_argument("--out", default=None, help="results .json; the .md table and .csv are written beside it")
    p.add_argument(
        "--allow-missing", action="store_true", help="score the images present in both roots and report the counts"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA, bf16 on CPU)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--launcher",
        choices=["none", "pytorch"],
        default="none",
        help="'pytorch' under torchrun: data-parallel, exact gathering",
    )
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--allow-pickle", action="store_true", help="load checkpoints with full pickle (trusted files)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value")
    p.add_argument(
        "--data_prefix_diffpure",
        "--data-prefix-diffpure",
        dest="data_prefix_diffpure",
        default=None,
        help="DiffPure's purified images (align/project.py --guidance none), for the diffpure mode",
    )
    p.add_argument("--tta", default=None, help="adaptation baselines on the raw images: a comma list of norm,tent,memo")
    p.add_argument("--seed", type=int, default=0, help="adaptation stream order, MEMO's augmentations, subsets")
    p.add_argument(
        "--max-per-corruption", type=int, default=None, help="score a seeded subset of this many images per set"
    )
    d = TTAConfig()
    p.add_argument("--tta-batch-size", type=int, default=d.batch_size, help="test-time BN and TENT batch")
    p.add_argument("--tent-lr", type=float, default=d.tent_lr)
    p.add_argument("--tent-momentum", type=float, default=d.tent_momentum)
    p.add_argument("--memo-views", type=int, default=d.memo_views, help="augmented copies per image")
    p.add_argument("--memo-lr", type=float, default=d.memo_lr)
    p.add_argument("--memo-prior", type=float, default=d.memo_prior, help="BN prior strength (source images' weight)")
    p.add_argument("--memo-steps", type=int, default=d.memo_steps)
    return p


def tta_config(args: argparse.Namespace) -> TTAConfig:
    """The adaptation baselines' settings from the flags (checked here)."""
    cfg = TTAConfig(
        methods=parse_tta(args.tta),
        batch_size=args.tta_batch_size,
        tent_lr=args.tent_lr,
        tent_momentum=args.tent_momentum,
        memo_views=args.memo_views,
        memo_lr=args.memo_lr,
        memo_prior=args.memo_prior,
        memo_steps=args.memo_steps,
    )
    if cfg.batch_size < 1 or cfg.memo_views < 1 or cfg.memo_steps < 1 or cfg.memo_prior < 0:
        raise UserError("--tta-batch-size, --memo-views and --memo-steps must be positive, --memo-prior >= 0")
    return cfg
