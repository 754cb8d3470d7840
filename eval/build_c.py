"""Build an ImageNet-C style "-C" set from any class-folder set.

    python eval/build_c.py data/imagenet/val data/ImageNet-C                  # ImageNet-C, 15 x 5
    python eval/build_c.py data/digits data/digits-C --profile cifar --format png --severity 5

Output: ``<out>/<corruption>/<severity>/<class>/<stem>.JPEG`` (or ``.png``). Resumable: existing
files are kept, each file is written atomically. One seed per image, so the result does not
depend on ``--workers``.
"""

from __future__ import annotations

import argparse

from sda.eval.builders import CorruptedSet, build_corrupted_set
from sda.eval.corruptions import FORMATS, JPEG_QUALITY, PROFILES
from sda.utils.cli import run_main
from sda.utils.layout import CORRUPTIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="ImageNet-C style corruptions of a class-folder image set")
    p.add_argument("src", help="source root: <src>/<class>/<image>")
    p.add_argument("out", help="output root: <out>/<corruption>/<severity>/<class>/<image>")
    p.add_argument(
        "--corruption", default="all", help="'all' (the 15 of ImageNet-C) or a comma list: " + ", ".join(CORRUPTIONS)
    )
    p.add_argument("--severity", default="1,2,3,4,5", help="comma list of severities in 1..5")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="imagenet",
        help="imagenet: resize 256 + crop 224 + ImageNet-C parameters (default); "
        "cifar: CIFAR-10-C parameters at the native size (32 px images)",
    )
    p.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default=None,
        help="jpeg (.JPEG) or png; default: jpeg for imagenet, png for cifar",
    )
    p.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality (ImageNet-C: 85)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    spec = CorruptedSet(
        src=args.src,
        out=args.out,
        corruptions=args.corruption,
        severities=args.severity,
        profile=args.profile,
        fmt=args.format,
        seed=args.seed,
        workers=args.workers,
        quality=args.quality,
    )
    counts = build_corrupted_set(spec)
    print(
        f"{counts['images']} source images: {counts['written']} files written, "
        f"{counts['skipped']} already present -> {args.out}"
    )
    return counts


if __name__ == "__main__":
    run_main(main)
