"""Stage 3: fine-tune an mmpretrain classifier on a class-folder set (mmpretrain's tools/train.py).

    python finetune/train.py configs/finetune/SwinT.py [--work-dir D] [--resume [CKPT]] [--amp]
        [--cfg-options k=v ...] [--launcher none|pytorch|slurm] [--data-root DIR]
        [--final-ckpt finetuned_ckpt/SwinT.pth] [--allow-pickle]

The config may also be a model name of configs/finetune ("SwinT"). Checkpoints of every epoch go
to the work dir (default work_dirs/<config name>); at the end the final weights are written to
``finetuned_ckpt/<config name>.pth`` ({"meta", "state_dict"}) with the resolved config beside it.
Multi-GPU: ``torchrun --nproc_per_node N finetune/train.py CONFIG --launcher pytorch`` (gloo on CPU).
"""

from __future__ import annotations

import argparse
import os

from sda.finetune.runner import FinetuneRun, finetune
from sda.utils.cli import run_main


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description="Fine-tune a classifier (mmpretrain) on a class-folder set.")
    p.add_argument("config", help="config file, or a model name of configs/finetune (e.g. SwinT)")
    p.add_argument("--work-dir", help="logs and per-epoch checkpoints (default work_dirs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        type=str,
        const="auto",
        help="resume from this checkpoint, or without a value from the latest one in the work dir",
    )
    p.add_argument("--amp", action="store_true", help="automatic mixed precision (GPU only)")
    p.add_argument("--no-validate", action="store_true", help="skip validation (the SDA configs have none)")
    p.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale the lr linearly from the config's base batch (auto_scale_lr) to the actual one",
    )
    p.add_argument("--no-pin-memory", action="store_true", help="disable pin_memory in the dataloaders")
    p.add_argument("--no-persistent-workers", action="store_true", help="disable persistent_workers in the dataloaders")
    p.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default=None,
        help="override config entries, e.g. load_from=path train_cfg.max_epochs=15",
    )
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none", help="job launcher")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data-root", help="class-folder training set (default: the config's data_root)")
    p.add_argument("--final-ckpt", help="where the final weights go (default finetuned_ckpt/<config name>.pth)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow arbitrary pickled objects in checkpoints (only for files you trust)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    fields = {k: v for k, v in vars(args).items() if k != "local_rank"}
    finetune(FinetuneRun(**fields))


if __name__ == "__main__":
    run_main(main)
