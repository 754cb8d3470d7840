"""Re-estimate a classifier's BatchNorm statistics on an unlabelled image folder (BN-adapt).

    python finetune/bn_adapt.py CONFIG CKPT --data-root data/DiT-Syn --out finetuned_ckpt/bn_adapt.pth

The weights stay those of CKPT; only BatchNorm running means and variances change. The result is
an MMPreTrain-format checkpoint that eval/evaluate.py loads like a fine-tuned one.
"""

from __future__ import annotations

from sda.commands import finetune_bn_adapt as main  # the same function as python -m sda.commands finetune/bn_adapt.py
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
