"""Stage 4 (eval) settings: ``EvalConfig``, built from the reference's command line and validated once."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sda.eval import ensemble
from sda.eval.tta import TTAConfig
from sda.utils.errors import UserError
from sda.utils.layout import parse_corruptions, parse_severities
from sda.utils.options import add_options, option, option_values, to_argv
from sda.utils.precision import amp_precision
from sda.utils.subset import SubsetOptions

DATATYPES = ("C", "W", "clean")  # clean: ImageNet val in the W layout (<root>/val/<wnid>/), the sanity check


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


def needs_projection(modes: list[str]) -> bool:
    return any(m not in ("first", DIFFPURE) for m in modes)


@dataclass(frozen=True)
class EvalConfig(SubsetOptions):
    """One evaluation: the models, the target roots and subsets, the modes and the run settings.

    ``checkpoint`` is the fine-tuned model (the only one without ``originckpt``); ``originckpt`` the
    original (source) model. ``single_model`` picks the model of every mode but ``sda`` (default: the
    original, as the paper's Source and DDA columns).
    """

    config: str = option(kind="positional", help="eval config (configs/eval/<Model>.py)")
    checkpoint: str = option(kind="positional", help="fine-tuned checkpoint (the only model without --originckpt)")
    data_prefix1: str = option(
        names=("--data_prefix1", "--data-prefix1"), required=True, help="raw target root (ImageNet-C or ImageNet-W)"
    )
    originckpt: str | None = option(None, "original (source) checkpoint; needed by the sda mode")
    data_prefix2: str | None = option(
        None, "projected root (same layout and file names)", names=("--data_prefix2", "--data-prefix2")
    )
    datatype: str = option("C", choices=DATATYPES)
    corruptions: tuple[str, ...] | str = option(
        "all", "'all', a name or a comma list (datatype C)", names=("--corruption",)
    )
    severities: tuple[int, ...] | str = option((5,), "5 or a comma list like 1,2,3", names=("--severity",))
    modes: tuple[str, ...] | str | None = option(
        None,
        "mode or comma list or 'all' (default: first,second,sum[,sda]): " + ", ".join(ensemble.MODES),
        names=("--ensemble",),
    )
    single_model: str = option(
        "original",
        "model of every mode but sda when --originckpt is given (default: original, as the paper's Source/DDA "
        "columns; 'finetuned' = the reference's positional checkpoint)",
        names=("--single-model",),
        choices=("original", "finetuned"),
    )
    out: str | None = option(None, "results .json; the .md table and .csv are written beside it")
    allow_missing: bool = option(
        False, "score the images present in both roots and report the counts", kind="switch", names=("--allow-missing",)
    )
    batch_size: int = option(64, names=("--batch-size",))
    num_workers: int = option(4, names=("--num-workers",))
    amp: bool = option(False, "autocast (fp16 on CUDA, bf16 on CPU)", kind="switch")
    device: str | None = option(None, "default: cuda when available", choices=("cpu", "cuda"))
    launcher: str = option(
        "none", "'pytorch' under torchrun: data-parallel, exact gathering", choices=("none", "pytorch")
    )
    allow_pickle: bool = option(
        False, "load checkpoints with full pickle (trusted files)", kind="switch", names=("--allow-pickle",)
    )
    cfg_options: dict[str, Any] | None = None  # --cfg-options key=value (mmengine's DictAction)
    metrics: tuple[str, ...] = option(("accuracy",), "only 'accuracy' (top-1 and top-5)", nargs="+")
    data_prefix_diffpure: str | None = option(
        None,
        "DiffPure's purified images (align/project.py --guidance none), for the diffpure mode",
        names=("--data_prefix_diffpure", "--data-prefix-diffpure"),
    )
    tta: TTAConfig = field(default_factory=TTAConfig)  # norm / tent / memo on the raw images
    seed: int = option(0, "adaptation stream order, MEMO's augmentations")
    plan: bool = option(
        False, "print what the run will score (images, classifier forwards) and check its inputs, then exit",
        kind="switch",
    )  # fmt: skip
    single: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if any(m != "accuracy" for m in self.metrics):
            raise UserError(f"--metrics {' '.join(self.metrics)}: only 'accuracy' is supported")
        if self.batch_size < 1 or self.num_workers < 0:
            raise UserError("--batch-size must be positive and --num-workers at least 0")
        if self.datatype not in DATATYPES:
            raise UserError(f"--datatype must be C, W or clean, got {self.datatype!r}")
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
        _ = self.subset  # checks --per-class
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
        tta = TTAConfig(**option_values(TTAConfig, args))
        return cls(**option_values(cls, args), cfg_options=args.cfg_options, tta=tta)

    def to_argv(self) -> list[str]:
        """``eval/evaluate.py``'s arguments for this config."""
        opts = [f"{k}={v}" for k, v in (self.cfg_options or {}).items()]
        return to_argv(self) + to_argv(self.tta) + (["--cfg-options", *opts] if opts else [])


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(
        prog="eval/evaluate.py", description="SDA / DDA ensemble evaluation on ImageNet-C / ImageNet-W layouts"
    )
    add_options(p, EvalConfig)
    add_options(p, TTAConfig)
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)  # torch.distributed
    return p
