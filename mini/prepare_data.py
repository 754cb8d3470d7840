"""Prepare a mini benchmark's data: its clean train/val/test splits, then their corrupted "-C" sets.

python mini/prepare_data.py                                   # glyphs32 -> data/mini/glyphs32 (+ val-C, test-C)
python mini/prepare_data.py --benchmark digits --no-corrupt   # the digits' clean splits only
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sda.mini.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK, get_benchmark
from sda.mini.data import build_corrupted_splits
from sda.utils.cli import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default=DEFAULT_BENCHMARK, choices=list(BENCHMARKS), help="which mini benchmark")
    p.add_argument("--out", default=None, help="output root (default: data/mini/<benchmark>)")
    p.add_argument("--seed", type=int, default=0, help="split seed (and corruption seed)")
    p.add_argument("--no-corrupt", action="store_true", help="write only the clean train/val/test splits")
    p.add_argument("--corruptions", default=None, help="comma-separated subset of the 15 corruptions (default: all)")
    p.add_argument("--severities", default="5", help="comma-separated severities (default: 5)")
    p.add_argument("--corrupt-splits", default="val,test", help="splits that get a -C set (default: val,test)")
    p.add_argument("--workers", type=int, default=1, help="processes for the corruption builder")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    bench = get_benchmark(args.benchmark)
    out = Path(args.out) if args.out else bench.data
    summary = bench.prepare(out, args.seed)
    print(f"wrote {out}: " + ", ".join(f"{s} {n}" for s, n in summary["sizes"].items()))
    if not args.no_corrupt:
        corruptions = args.corruptions.split(",") if args.corruptions else None
        for root in build_corrupted_splits(
            out,
            splits=args.corrupt_splits.split(","),
            corruptions=corruptions,
            severities=[int(s) for s in args.severities.split(",")],
            seed=args.seed,
            workers=args.workers,
        ):
            print(f"wrote {root}")


if __name__ == "__main__":
    run_main(main)
