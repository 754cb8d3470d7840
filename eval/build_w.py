"""Build ImageNet-W from a class-folder set (ImageNet val): resize 256, center crop 224, then the
``imagenet-w`` package's ``AddWatermark`` (Whac-A-Mole's watermark), as ``<out>/val/<class>/<stem>``.

    python eval/build_w.py data/imagenet/val data/ImageNet-W

Resumable and atomic; deterministic (no randomness).
"""

from __future__ import annotations

import argparse

from sda.eval.builders import build_watermarked_set
from sda.eval.corruptions import FORMATS
from sda.utils.cli import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="ImageNet-W: the Whac-A-Mole watermark on the 224 center crop")
    p.add_argument("src", help="source root: <src>/<class>/<image>")
    p.add_argument("out", help="output root: <out>/val/<class>/<image>")
    p.add_argument("--format", choices=sorted(FORMATS), default="jpeg", help="jpeg (.JPEG, default) or png")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--workers", type=int, default=1, help="processes")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    counts = build_watermarked_set(args.src, args.out, args.format, args.workers, args.quality)
    print(
        f"{counts['images']} source images: {counts['written']} written, "
        f"{counts['skipped']} already present -> {args.out}/val"
    )
    return counts


if __name__ == "__main__":
    run_main(main)
