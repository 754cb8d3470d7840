"""The validation study of a mini benchmark (see ``sda.mini.study``): fine-tuning strength, synthetic set size and
generator, each chosen on the validation split; then the gates (a)-(g) of the chosen setting with 95% intervals.

    python mini/study.py                   # glyphs32 -> results/mini/glyphs32/study/{study.json, study.md}
    python mini/study.py --quick           # tiny counts (CI)
    python mini/study.py --test            # the powered test (sda/mini/configs/<b>/powered.json)

Rerunning resumes: every row, set and cached score is kept.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sda.mini.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK
from sda.mini.study import StudyRun, main_study
from sda.utils.cli import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default=DEFAULT_BENCHMARK, choices=list(BENCHMARKS), help="which mini benchmark")
    p.add_argument("--out", default=None, help="output folder (default results/mini/<benchmark>/study)")
    p.add_argument("--data", default=None, help="data folder, made on first use (default data/mini/<benchmark>)")
    p.add_argument("--assets", default=None, help="source models (default: the bundled sda/mini/assets/<benchmark>)")
    p.add_argument("--quick", action="store_true", help="tiny counts and steps (for CI)")
    p.add_argument("--test", action="store_true", help="run the powered test of the committed setting")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="stage jobs side by side")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    paths = {k: Path(v) if v else None for k, v in (("out", a.out), ("data", a.data), ("assets", a.assets))}
    run = StudyRun(benchmark=a.benchmark, quick=a.quick, threads=a.threads, **paths)
    if a.test:
        from sda.mini.powered import main_powered
        from sda.mini.study import open_study

        main_powered(open_study(run))
    else:
        main_study(run)


if __name__ == "__main__":
    run_main(main)
