"""Helpers for the align stage tests: a tiny ADM UNet and D/C/W input layouts."""

from __future__ import annotations

import torch

from sda.align import AlignConfig, ProjectionConfig, project_folder
from sda.testing import TINY_ADM as TINY_FLAGS  # noqa: E402, F401 - the tests' names for the tiny model and trees
from sda.testing import make_layout, tiny_unet, write_images  # noqa: E402, F401

FAST = dict(N=2, D=4, scale=6.0, batch_size=4)

# The same projection computed in two float32 summation orders (other kernels, batch sizes or CPUs): an n-term
# sum differs by about sqrt(n) * 2^-24 relative (n <= 1,152 in the tiny UNet's widest conv: 2e-6), compounded
# over ~20 layers and the guided steps; seen up to 4e-6 on two CPUs (Intel, AMD). A wrong step, noise draw,
# filter or a batch-coupled norm moves pixels by more than 1e-3, so 1e-4 still tells a bug from rounding.
FP32_TWO_ORDERS = 1e-4


PROJECTION_KEYS = ("N", "D", "scale", "guidance_norm", "lowpass", "clip_denoised", "guidance", "sde_dt")
RUN_KEYS = ("rank", "world_size", "device")


def project_flat(model: torch.nn.Module, diffusion, **kw) -> dict:
    """``project_folder`` with the settings given flat (N=, D=, base_samples=, ...), as the tests write them."""
    projection = ProjectionConfig(**{k: kw.pop(k) for k in PROJECTION_KEYS if k in kw})
    run = {k: kw.pop(k) for k in RUN_KEYS if k in kw}
    return project_folder(model, diffusion, AlignConfig(projection=projection, **kw), **run)
