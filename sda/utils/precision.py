"""One precision policy: a run picks its precision once (a name) and every stage reads it from here.

- ``fp32``: float32 everywhere (the reference's default on CPU, and for DiT sampling);
- ``bf16`` / ``fp16``: the model runs under ``torch.autocast`` with that dtype, inputs and outputs stay
  float32 (the ADM projector's ``fp16`` is instead the reference's ``convert_to_fp16()``, see
  ``sda.align.projection.prepare_model``);
- ``fp64``: float64 weights and tensors, for bit-exact checks on a CPU (DiT only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sda.utils.errors import UserError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp64")
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(name: str, allowed: Sequence[str] = PRECISIONS, flag: str = "--precision") -> str:
    """``name`` if it is one of ``allowed``; else a :class:`UserError` naming the flag and the choices."""
    if name not in allowed:
        raise UserError(f"{flag} {name!r}: use one of {', '.join(allowed)}")
    return name


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of the tensors a run keeps between model calls: float64 for fp64, else float32."""
    return torch.float64 if precision == "fp64" else torch.float32


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for bf16 / fp16, nothing otherwise."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def amp_precision(device: torch.device) -> str:
    """What ``--amp`` means on a device: fp16 on CUDA (as mmengine's AMP), bf16 on a CPU."""
    return "fp16" if device.type == "cuda" else "bf16"


class Autocast(nn.Module):
    """Run ``model`` under :func:`autocast` and return float32 outputs."""

    def __init__(self, model: nn.Module, precision: str, device_type: str):
        super().__init__()
        self.model = model
        self.precision = precision
        self.device_type = device_type

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with autocast(self.precision, self.device_type):
            out = self.model(*args, **kwargs)
        return out.float()
