"""What makes a resumed fine-tune equal an uninterrupted one: every random stream of the training process saved
with each epoch checkpoint and restored before the resumed epochs, and the run's seed kept with the run.

mmengine restores the weights, the optimizer, the schedulers and the epoch, but not the random streams that the
data pipeline (RandomResizedCrop, flips, RandAugment: Python's ``random`` and NumPy's global generator), the
model (drop path: torch's generator) and the data loader (its base seed, drawn from torch's generator each epoch)
draw from. They are stored here as plain tensors and lists (loadable with ``weights_only``), one entry per
process, and restored in ``before_train``, after mmengine's resume has finished (which may reseed).

The generators inside *persistent* data-loader workers (``num_workers > 0`` with persistent workers,
mmengine's default then) live in the worker processes and would carry on from epoch to epoch, which a resume
cannot restore; ``sda.finetune.workers`` makes them depend on the epoch instead. Non-persistent workers are
reseeded the same way each epoch, so they need nothing.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from sda.utils.dist import all_gather_object, rank_and_world

KEY = "sda_rng_states"  # the checkpoint entry: one dict per process rank


def rng_states() -> dict[str, Any]:
    """This process's random streams as tensors and plain lists."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(s: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    version, state, gauss = s["python"]
    random.setstate((version, tuple(state), gauss))
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def gathered_states() -> list[dict[str, Any]]:
    """Every process's states, by rank (all processes call this; rank 0's checkpoint keeps them all)."""
    return all_gather_object(rng_states())


def restore_own(states: list[dict[str, Any]]) -> None:
    """Restore this process's entry of a checkpoint's states (by rank)."""
    rank = rank_and_world()[0]
    if rank < len(states):
        set_rng_states(states[rank])
