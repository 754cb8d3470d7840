"""Re-estimate a classifier's BatchNorm statistics on an unlabelled image folder (BN-adapt).

    python finetune/bn_adapt.py CONFIG CKPT --data-root data/DiT-Syn --out finetuned_ckpt/bn_adapt.pth

The weights stay those of CKPT; only BatchNorm running means and variances change. The result is
an MMPreTrain-format checkpoint that eval/evaluate.py loads like a fine-tuned one.
"""

from __future__ import annotations

import argparse

import torch

from sda.finetune.bn_adapt import adapt_bn_statistics, folder_batches
from sda.finetune.classifiers import build_classifier_from_config, load_config
from sda.utils.checkpoint import file_sha256
from sda.utils.cli import run_main
from sda.utils.io import atomic_write


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="classifier config (with a test pipeline), e.g. configs/finetune/TinyResNet.py")
    p.add_argument("checkpoint", help="the source model's weights")
    p.add_argument("--data-root", required=True, help="image folder (<class>/<image>; labels are not used)")
    p.add_argument("--out", required=True, help="output checkpoint (.pth)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--allow-pickle", action="store_true", help="load a legacy pickled checkpoint (trusted files only)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config)
    model = build_classifier_from_config(cfg, args.checkpoint, device=args.device, allow_pickle=args.allow_pickle)
    seen = adapt_bn_statistics(model, folder_batches(cfg, args.data_root, args.batch_size, torch.device(args.device)))
    meta = {
        "bn_adapt": {
            "source": str(args.checkpoint),
            "source_sha256": file_sha256(args.checkpoint),
            "data_root": str(args.data_root),
            "images": seen,
        }
    }
    with atomic_write(args.out) as f:
        torch.save({"meta": meta, "state_dict": model.state_dict()}, f)
    print(f"BN statistics re-estimated on {seen} images -> {args.out}")


if __name__ == "__main__":
    run_main(main)
