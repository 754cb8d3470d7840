"""Build an ImageNet-C style "-C" set from any class-folder set.

    python eval/build_c.py data/imagenet/val data/ImageNet-C                  # ImageNet-C, 15 x 5
    python eval/build_c.py data/digits data/digits-C --profile cifar --format png --severity 5

Output: ``<out>/<corruption>/<severity>/<class>/<stem>.JPEG`` (or ``.png``). Resumable: existing
files are kept, each file is written atomically. One seed per image, so the result does not
depend on ``--workers``.
"""

from __future__ import annotations

from sda.eval.builders import CorruptedSet, build_corrupted_set
from sda.utils.cli import run_main


def main(argv: list[str] | None = None) -> dict:
    spec = CorruptedSet.from_argv(argv)
    counts = build_corrupted_set(spec)
    print(
        f"{counts['images']} source images: {counts['written']} files written, "
        f"{counts['skipped']} already present -> {spec.out}"
    )
    return counts


if __name__ == "__main__":
    run_main(main)
