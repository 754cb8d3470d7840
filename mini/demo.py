"""A mini benchmark: the whole SDA method (gen -> align -> finetune -> eval) on a CPU in minutes, with the
paper's ablation, DiffPure, the adaptation controls, an oracle and the premise gates.

    python mini/demo.py                          # glyphs32, seed 0, bundled source models (sda/mini/assets/glyphs32)
    python mini/demo.py --seeds 0,1,2            # the README's 3-seed table (mean ± std) and verdict
    python mini/demo.py --benchmark digits       # the premise-absent control (sklearn digits)
    python mini/demo.py --quick                  # a shortened run (CI): tiny counts and steps
    python mini/demo.py --retrain-sources        # first retrain the source models into assets/mini/<b>

Writes results/mini/<benchmark>/results.json, results.md (the tables, gates, verdict), results.png (bar chart),
grid_*.png, and per seed results/mini/<benchmark>/seed<k>/ with every stage's outputs and logs. Rerunning
resumes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sda.mini.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK
from sda.mini.pipeline import DemoRun, main_run
from sda.utils.cli import int_list, run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default=DEFAULT_BENCHMARK, choices=list(BENCHMARKS), help="which mini benchmark")
    p.add_argument("--seeds", type=int_list, default=[0], help="comma list of seeds (gen, align, finetune); e.g. 0,1,2")
    p.add_argument("--out", default=None, help="output folder (default results/mini/<benchmark>)")
    p.add_argument("--data", default=None, help="data folder, made on first use (default data/mini/<benchmark>)")
    p.add_argument(
        "--assets",
        default=None,
        help="source models (default: the bundled sda/mini/assets/<benchmark>; with --retrain-sources, "
        "assets/mini/<benchmark>, where they are retrained)",
    )
    p.add_argument("--quick", action="store_true", help="shortened run: tiny counts and steps (for CI)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the stage processes")
    p.add_argument(
        "--retrain-sources",
        action="store_true",
        help="retrain the source models first (slow), into --assets (the bundled ones are never written)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    paths = {k: Path(getattr(args, k)) if getattr(args, k) else None for k in ("out", "data", "assets")}
    run = DemoRun(
        args.benchmark,
        tuple(args.seeds),
        **paths,
        quick=args.quick,
        threads=args.threads,
        retrain_sources=args.retrain_sources,
    )
    main_run(run)


if __name__ == "__main__":
    run_main(main)
