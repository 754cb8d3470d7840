"""Rank-aware progress bars: tqdm on rank 0, silent elsewhere."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from sda.utils.dist import is_main


def progress(
    iterable: Iterable | None = None, total: int | None = None, desc: str | None = None, **kwargs: Any
) -> tqdm:
    disable = not is_main() or os.environ.get("SDA_NO_PROGRESS") == "1"
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)


def log(msg: str) -> None:
    """Print on rank 0 only."""
    if is_main():
        print(msg, flush=True)
