"""Per-image seeding: the noise of an image depends only on its own key, never on
the batch size, the number of processes or the device."""

from __future__ import annotations

import hashlib

import torch


def image_seed(global_seed: int, *keys: int | str) -> int:
    """A stable 63-bit seed from the global seed and an image's keys (class, index, path...)."""
    text = "/".join([str(int(global_seed))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g
