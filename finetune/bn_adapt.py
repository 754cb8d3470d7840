"""Re-estimate a classifier's BatchNorm statistics on an unlabelled image folder (BN-adapt).

    python finetune/bn_adapt.py CONFIG CKPT --data-root data/DiT-Syn --out finetuned_ckpt/bn_adapt.pth

The weights stay those of CKPT; only BatchNorm running means and variances change. The result is
an MMPreTrain-format checkpoint that eval/test_ensemble.py loads like a fine-tuned one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from sda.bn_adapt import adapt_bn_statistics, folder_batches  # noqa: E402
from sda.classifiers import build_classifier_from_config, load_config  # noqa: E402
from sda.utils.checkpoint import file_sha256  # noqa: E402
from sda.utils.cli import run_main  # noqa: E402
from sda.utils.io import atomic_write  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="classifier config (with a test pipeline), e.g. configs/mini/classifier_eval.py")
    p.add_argument("checkpoint", help="the source model's weights")
    p.add_argument("--data-root", required=True, help="image folder (<class>/<image>; labels are not used)")
    p.add_argument("--out", required=True, help="output checkpoint (.pth)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--allow-pickle", action="store_true", help="load a legacy pickled checkpoint (trusted files only)")
    args = p.parse_args()
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
