"""Build an ImageNet-C style "-C" set from any class-folder set.

    python eval/build_c.py data/imagenet/val data/ImageNet-C                  # ImageNet-C, 15 x 5
    python eval/build_c.py data/digits data/digits-C --profile cifar --format png --severity 5

Output: ``<out>/<corruption>/<severity>/<class>/<stem>.JPEG`` (or ``.png``). Resumable: existing
files are kept, each file is written atomically. One seed per image, so the result does not
depend on ``--workers``.
"""

from __future__ import annotations

from sda.commands import eval_build_c as main  # the same function as python -m sda.commands eval/build_c.py
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
