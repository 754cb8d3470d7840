"""Build ImageNet-W from a class-folder set (ImageNet val): resize 256, center crop 224, then the
``imagenet-w`` package's ``AddWatermark`` (Whac-A-Mole's watermark), as ``<out>/val/<class>/<stem>``.

    python eval/build_w.py data/imagenet/val data/ImageNet-W

Resumable and atomic; deterministic (no randomness).
"""

from __future__ import annotations

from sda.commands import eval_build_w as main  # the same function as python -m sda.commands eval/build_w.py
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
