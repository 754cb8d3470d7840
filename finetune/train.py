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

from sda.commands import finetune_train as main  # the same function as python -m sda.commands finetune/train.py
from sda.finetune.config import build_parser  # noqa: F401 - --help and the tests
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
