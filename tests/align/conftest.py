"""Fixtures for the align stage tests (helpers in align_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from sda.align.projection import prepare_model
from sda.diffusion import create_diffusion

sys.path.insert(0, str(Path(__file__).parent))  # test modules here import align_helpers
from align_helpers import tiny_unet  # noqa: E402


@pytest.fixture(autouse=True)
def _align_one_thread(one_thread: None) -> None:
    """Every align test runs on one thread (the fixture of tests/conftest.py)."""


@pytest.fixture(scope="session")
def model() -> torch.nn.Module:
    return prepare_model(tiny_unet(), "fp32")


@pytest.fixture(scope="session")
def diffusion():
    return create_diffusion("4")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny_adm.pt"
    torch.save(tiny_unet().state_dict(), path)
    return path
