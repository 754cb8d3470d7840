"""Train a mini benchmark's source models from scratch, measure its premise gates, write the manifest.

    python mini/train_sources.py                               # glyphs32: data, 5 models, gates
    python mini/train_sources.py --benchmark digits            # the digits control
    python mini/train_sources.py --steps gates                 # re-measure the gates of the committed models
    python mini/train_sources.py --steps lowpass,oracle,gates  # only the gate models, then the gates

See ``sda.mini.sources`` for what is trained, how, and which gates are measured (validation data only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sda.mini.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK
from sda.mini.sources import STEPS, SourcesRun, retrain_sources
from sda.utils.cli import run_main
from sda.utils.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default=DEFAULT_BENCHMARK, choices=list(BENCHMARKS), help="which mini benchmark")
    p.add_argument("--data", default=None, help="data root (default data/mini/<benchmark>; clean splits are rewritten)")
    p.add_argument("--results", default=None, help="training logs and work folders (default results/mini/<b>/train)")
    p.add_argument(
        "--assets",
        default=None,
        help="where the models and MANIFEST.json go (default assets/mini/<b> here; it starts from a copy of "
        "the bundled models, which are never written)",
    )
    p.add_argument("--seed", type=int, default=0, help="data split seed")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma list, in this order: {','.join(STEPS)}")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the gates; parallel training jobs")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    steps = tuple(s for s in args.steps.split(",") if s)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise UserError(f"--steps {','.join(unknown)}: unknown step; choose from {','.join(STEPS)}")
    paths = {k: Path(getattr(args, k)) if getattr(args, k) else None for k in ("data", "results", "assets")}
    retrain_sources(SourcesRun(args.benchmark, **paths, seed=args.seed, steps=steps, threads=args.threads))


if __name__ == "__main__":
    run_main(main)
