"""Cost plans before any work: shared wording, and the inputs an earlier stage of the same run will make.

A driver that runs several stages (``scripts/table1.sh``) plans them in order with ``DRY_RUN=1``; an input that an
earlier stage will write does not exist yet, so the driver names it in ``$SDA_PLANNED``: one ``path=images`` per
line (images 0 when unknown). A stage's plan takes such an input as given instead of failing on it.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SDA_PLANNED"


def planned_inputs() -> dict[Path, int]:
    """The inputs an earlier stage of this run will make: resolved path -> images (0: unknown)."""
    out: dict[Path, int] = {}
    for line in os.environ.get(ENV, "").splitlines():
        path, _, n = line.strip().rpartition("=")
        if path:
            out[Path(path).resolve()] = int(n) if n.isdigit() else 0
    return out


def planned_images(path: str | os.PathLike) -> int | None:
    """Images an earlier stage of this run will write to ``path`` (0: unknown), or None if none will."""
    return planned_inputs().get(Path(path).resolve())


def processes_from_env() -> int:
    """The process count a plan assumes: $NGPU (the scripts' variable), else 1."""
    n = os.environ.get("NGPU", "")
    return int(n) if n.isdigit() and int(n) > 0 else 1


def count(n: float) -> str:
    return f"{int(round(n)):,}"


def duration(seconds: float) -> str:
    """``3 h 20 min``, ``12 min``, ``40 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min"
    return f"{seconds:.0f} s"
