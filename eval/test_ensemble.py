"""The reference's name for the evaluation command (SDA's ``eval/test_ensemble.py``): ``eval/evaluate.py``
under its old name, so the reference's command lines keep working."""

from __future__ import annotations

import runpy
from pathlib import Path

from sda.utils.cli import run_main

main = runpy.run_path(str(Path(__file__).with_name("evaluate.py")))["main"]

if __name__ == "__main__":
    run_main(main)
