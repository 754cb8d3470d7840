"""The mini benchmark: the whole SDA method (gen -> align -> finetune -> eval) on a CPU in minutes.

    python mini/demo.py                      # seed 0, bundled source models (assets/mini)
    python mini/demo.py --seeds 0,1,2        # the README's 3-seed table (mean ± std)
    python mini/demo.py --quick              # a shortened run (CI): tiny counts and steps
    python mini/demo.py --retrain-sources    # first retrain the three source models from scratch

Writes results/mini/results.json, results.md (the table), results.png (bar chart), grid_*.png,
and per seed results/mini/seed<k>/ with every stage's outputs and logs. Rerunning resumes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sda.mini.pipeline import DemoRun, main_run
from sda.mini.procs import ROOT
from sda.utils.cli import int_list, run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int_list, default=[0], help="comma list of seeds (gen, align, finetune); e.g. 0,1,2")
    p.add_argument("--out", default="results/mini", help="output folder")
    p.add_argument("--data", default="data/mini", help="data folder (made on first use)")
    p.add_argument("--assets", default="assets/mini", help="source models (adm_uncond.pt, adm_cond.pt, classifier.pth)")
    p.add_argument("--quick", action="store_true", help="shortened run: tiny counts and steps (for CI)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per stage process")
    p.add_argument("--retrain-sources", action="store_true", help="retrain the source models first (slow)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.chdir(ROOT)
    paths = {k: Path(getattr(args, k)) for k in ("out", "data", "assets")}
    run = DemoRun(
        tuple(args.seeds), **paths, quick=args.quick, threads=args.threads, retrain_sources=args.retrain_sources
    )
    main_run(run)


if __name__ == "__main__":
    run_main(main)
