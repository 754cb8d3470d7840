"""Projection speed measured on the user's own hardware, kept for cost plans.

``benchmarks/bench_align.py`` records, per device and projector, the seconds one model step takes per image
(a guided step: forward and backward; an unguided one: forward only). ``align/project.py --plan`` turns a
measurement into a time estimate; without one it says how to take it, and estimates nothing.
The records live in ``<cache>/throughput.json`` (``$SDA_CACHE_DIR``, default ``~/.cache/sda-tta``).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sda.utils.checkpoint import cache_dir

FILE = "throughput.json"


@dataclass(frozen=True)
class StepKind:
    """What one measured step is: the device, the projector's size, its precision and whether it backpropagates."""

    device: str  # e.g. "NVIDIA H100 80GB HBM3" or the CPU's model name
    image_size: int
    params: int  # the UNet's parameter count (identifies the architecture)
    precision: str  # fp32 / fp16 / bf16
    grad: bool  # guided (forward + backward per step) or not (forward only)

    def key(self) -> str:
        return f"{self.device}|{self.image_size}px|{self.params}|{self.precision}|{'grad' if self.grad else 'fwd'}"


def path() -> Path:
    return cache_dir() / FILE


def _read() -> dict[str, Any]:
    try:
        return json.loads(path().read_text())
    except (OSError, ValueError):
        return {}


def record(kind: StepKind, seconds_per_image_step: float, batch_size: int, note: str = "") -> Path:
    """Remember a measurement (the latest one of a kind and batch size wins); returns the file written."""
    from sda.utils.io import write_json

    data = _read()
    entry = {
        **asdict(kind),
        "batch_size": batch_size,
        "seconds_per_image_step": seconds_per_image_step,
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "note": note,
    }
    data.setdefault(kind.key(), {})[str(batch_size)] = entry
    write_json(path(), data)  # an unwritable cache: one line naming the file
    return path()


def lookup(kind: StepKind, batch_size: int | None = None) -> dict[str, Any] | None:
    """The measurement of ``kind`` at ``batch_size``, else at the largest batch measured; None if never measured."""
    entries = _read().get(kind.key()) or {}
    with contextlib.suppress(KeyError):
        return entries[str(batch_size)]
    if not entries:
        return None
    return entries[max(entries, key=int)]


def device_name(device: Any) -> str:
    """The name a measurement is filed under: the GPU's name, or the CPU's model name and torch's threads."""
    import platform

    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    return f"CPU {platform.processor() or 'unknown'} ({torch.get_num_threads()} threads)"
