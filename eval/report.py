"""Table 1 as reproduced: merge eval's results (results/eval/<Model>_{C,W,clean}.json) into the paper's layout,
beside the published numbers, with 95% intervals and whether each published number lies inside.

    python eval/report.py [--results results/eval] [--out results/eval/table1]
    python eval/report.py results/eval/ResNet50_C.json results/eval/SwinT_C.json --out my_table
    python eval/report.py --published        # the paper's numbers alone
"""

from __future__ import annotations

from sda.commands import eval_report as main  # the same function as python -m sda.commands eval/report.py
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
