"""Fixtures of the fault suite: tiny checkpoints and input trees (commands.py builds the command lines)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sda.testing import make_layout, tiny_dit, tiny_unet, write_images


@pytest.fixture(scope="session")
def fault_inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fault_inputs")
    adm = root / "adm.pt"
    torch.save(tiny_unet().state_dict(), adm)
    make_layout(root / "W", "W", per_class=20, classes=("n01", "n02"))  # 40 images
    for c in range(4):
        write_images(root / "src" / f"{c:04d}", [f"{i:06d}.png" for i in range(4)], seed=c, size=(32, 32))
    return {"dit": tiny_dit(root / "dit.pt"), "adm": adm, "W": root / "W", "src": root / "src"}
