"""What a run records about its environment: package versions (and the machine, where speed matters)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform

import numpy as np
import torch


def versions(*distributions: str, machine: bool = False) -> dict[str, str]:
    """Python, torch and numpy versions, then each installed distribution's (missing ones are left out);
    with ``machine`` the platform string too."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in distributions:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    if machine:
        out["platform"] = platform.platform()
    return out
