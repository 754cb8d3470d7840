"""Every entry point as a function of its arguments, so a stage runs where the repository's scripts are not (an
installed wheel): ``python -m sda.commands gen/sample.py ARGS`` runs what ``python gen/sample.py ARGS`` runs. The
scripts in the stage folders call these same functions; the mini benchmark starts its stage subprocesses here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def gen_sample(argv: list[str] | None = None) -> Any:
    from sda.gen import GenConfig, generate

    cfg = GenConfig.from_argv(argv)
    if cfg.plan:
        from sda.gen.plan import gen_plan

        return gen_plan(cfg)
    return generate(cfg)


def gen_train(argv: list[str] | None = None) -> Any:
    from sda.training.config import GenTrainConfig
    from sda.training.runner import build_generator, run_training

    cfg = GenTrainConfig.from_argv(argv)
    return run_training(cfg, lambda: build_generator(cfg))


def align_project(argv: list[str] | None = None) -> Any:
    from sda.align import AlignConfig, align
    from sda.align.runner import use_align_backend

    cfg = AlignConfig.from_argv(argv)
    if cfg.plan:
        from sda.align.plan import align_plan
        from sda.utils.plan import processes_from_env

        return align_plan(cfg, processes_from_env())
    use_align_backend()
    return align(cfg)


def align_train(argv: list[str] | None = None) -> Any:
    from sda.models.adm_flags import create_model, model_kwargs
    from sda.training.config import align_train_config
    from sda.training.runner import run_training

    cfg = align_train_config(argv)
    return run_training(cfg, lambda: create_model(**model_kwargs(cfg.model_flags)))


def finetune_train(argv: list[str] | None = None) -> Any:
    import os

    from sda.finetune.config import FinetuneConfig, build_parser
    from sda.finetune.runner import finetune

    cfg = FinetuneConfig.from_argv(argv)
    if cfg.plan:
        from sda.finetune.plan import finetune_plan
        from sda.utils.plan import processes_from_env

        return finetune_plan(cfg, processes_from_env())
    os.environ.setdefault("LOCAL_RANK", str(build_parser().parse_known_args(argv)[0].local_rank))
    return finetune(cfg)


def finetune_bn_adapt(argv: list[str] | None = None) -> Any:
    from sda.finetune.bn_adapt import bn_adapt
    from sda.finetune.config import BNAdaptConfig

    return bn_adapt(BNAdaptConfig.from_argv(argv))


def eval_evaluate(argv: list[str] | None = None) -> Any:
    from sda.eval import EvalConfig, evaluate

    cfg = EvalConfig.from_argv(argv)
    if cfg.plan:
        from sda.eval.plan import eval_plan

        return eval_plan(cfg)
    return evaluate(cfg)


def eval_build_c(argv: list[str] | None = None) -> Any:
    from sda.eval.builders import CorruptedSet, build_corrupted_set

    spec = CorruptedSet.from_argv(argv)
    counts = build_corrupted_set(spec)
    print(f"{counts['images']} source images: {counts['written']} files written, {counts['skipped']} already present")
    return counts


def eval_build_w(argv: list[str] | None = None) -> Any:
    from sda.eval.builders import WatermarkedSet, build_watermarked_set

    spec = WatermarkedSet.from_argv(argv)
    counts = build_watermarked_set(spec)
    print(f"{counts['images']} source images: {counts['written']} written, {counts['skipped']} already present")
    return counts


def eval_report(argv: list[str] | None = None) -> Any:
    from sda.eval.report import ReportConfig, report

    return report(ReportConfig.from_argv(argv))


COMMANDS: dict[str, Callable[[list[str] | None], Any]] = {
    "gen/sample.py": gen_sample,
    "gen/train.py": gen_train,
    "align/project.py": align_project,
    "align/train.py": align_train,
    "finetune/train.py": finetune_train,
    "finetune/bn_adapt.py": finetune_bn_adapt,
    "eval/evaluate.py": eval_evaluate,
    "eval/build_c.py": eval_build_c,
    "eval/build_w.py": eval_build_w,
    "eval/report.py": eval_report,
}


def main(argv: list[str] | None = None) -> Any:
    from sda.utils.errors import UserError

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        raise UserError(f"python -m sda.commands SCRIPT ARGS: SCRIPT is one of {', '.join(COMMANDS)}")
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    from sda.utils.cli import run_main

    run_main(main)
