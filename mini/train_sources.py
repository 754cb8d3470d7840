"""Train the mini benchmark's three source models from scratch, check their quality gates, write the manifest.

    python mini/train_sources.py                      # data prep + 3 trainings + gates -> assets/mini/
    python mini/train_sources.py --gates-only         # re-measure the gates of the committed models

See ``sda.mini.sources`` for what is trained, how, and which gates are measured (validation data only).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sda.mini.procs import ROOT
from sda.mini.sources import SourcesRun, retrain_sources
from sda.utils.cli import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mini", help="data root (clean splits are (re)written here)")
    p.add_argument("--results", default="results/mini/train", help="training checkpoints and logs")
    p.add_argument("--assets", default="assets/mini", help="where the trained models and MANIFEST.json go")
    p.add_argument("--seed", type=int, default=0, help="data split seed")
    p.add_argument("--gates-only", action="store_true", help="skip training; measure the gates of --assets")
    p.add_argument("--no-gates", action="store_true", help="train only")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the gates")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.chdir(ROOT)
    paths = {k: Path(getattr(args, k)) for k in ("data", "results", "assets")}
    retrain_sources(
        SourcesRun(**paths, seed=args.seed, gates_only=args.gates_only, no_gates=args.no_gates, threads=args.threads)
    )


if __name__ == "__main__":
    run_main(main)
