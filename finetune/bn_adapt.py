"""Re-estimate a classifier's BatchNorm statistics on an unlabelled image folder (BN-adapt).

    python finetune/bn_adapt.py CONFIG CKPT --data-root data/DiT-Syn --out finetuned_ckpt/bn_adapt.pth

The weights stay those of CKPT; only BatchNorm running means and variances change. The result is
an MMPreTrain-format checkpoint that eval/evaluate.py loads like a fine-tuned one.
"""

from __future__ import annotations

import torch

from sda.finetune.bn_adapt import adapt_bn_statistics, folder_batches
from sda.finetune.classifiers import build_classifier_from_config, load_config
from sda.finetune.config import BNAdaptConfig
from sda.utils.checkpoint import file_sha256
from sda.utils.cli import run_main
from sda.utils.io import atomic_write


def main(argv: list[str] | None = None) -> None:
    c = BNAdaptConfig.from_argv(argv)
    cfg = load_config(c.config)
    model = build_classifier_from_config(cfg, c.checkpoint, device=c.device, allow_pickle=c.allow_pickle)
    seen = adapt_bn_statistics(model, folder_batches(cfg, c.data_root, c.batch_size, torch.device(c.device)))
    meta = {
        "bn_adapt": {
            "source": str(c.checkpoint),
            "source_sha256": file_sha256(c.checkpoint),
            "data_root": str(c.data_root),
            "images": seen,
        }
    }
    with atomic_write(c.out) as f:
        torch.save({"meta": meta, "state_dict": model.state_dict()}, f)
    print(f"BN statistics re-estimated on {seen} images -> {c.out}")


if __name__ == "__main__":
    run_main(main)
