"""Data-loader workers whose random streams depend on the epoch, not on how long the worker has lived, so that a
fine-tune resumed with persistent workers equals an uninterrupted one.

mmengine seeds each worker once, when it starts (``seed + num_workers * rank + worker_id``). Persistent workers
(mmpretrain's ImageNet recipes: ``num_workers=5, persistent_workers=True``) then carry their generators from
epoch to epoch, so a resumed run, whose workers start afresh at epoch k, augments differently from the run it
resumes. Here the sampler tags every index with its epoch and the dataset, inside the worker, reseeds Python's
``random``, NumPy's and torch's generators whenever the epoch changes, from (seed, epoch, rank, worker). Each
epoch still draws fresh augmentations, as persistent workers do; only which numbers they are changes.

``epoch_seeded`` rewrites a train dataloader config to use the two wrappers; it applies only to persistent
workers (non-persistent ones are reseeded the same way every epoch, and ``num_workers=0`` runs the pipeline in
the training process, whose streams the checkpoints keep).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import mmengine.dataset  # noqa: F401  (registers mmengine's samplers: DefaultSampler, InfiniteSampler)
import numpy as np
import torch
from mmengine.registry import DATA_SAMPLERS, DATASETS


def worker_seed(seed: int, epoch: int, rank: int, worker: int) -> int:
    """The seed of one worker for one epoch (independent streams for every combination)."""
    return int(np.random.SeedSequence([seed, epoch, rank, worker]).generate_state(1)[0])


@DATASETS.register_module(force=True)
class EpochSeededDataset:
    """A dataset read with ``(epoch, index)`` keys: reseeds the worker's generators when the epoch changes."""

    def __init__(self, dataset: Any, seed: int, rank: int = 0) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.seed, self.rank = seed, rank
        self._epoch: int | None = None  # per worker process: each holds its own copy

    def __getattr__(self, name: str) -> Any:  # metainfo, full_init, get_data_info, ... of the wrapped set
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        if not isinstance(key, tuple):  # read outside the tagged sampler (a hook, a visualizer): as it is
            return self.dataset[key]
        epoch, index = key
        info = torch.utils.data.get_worker_info()
        if info is not None and epoch != self._epoch:
            s = worker_seed(self.seed, epoch, self.rank, info.id)
            random.seed(s)
            np.random.seed(s)
            torch.manual_seed(s)
            self._epoch = epoch
        return self.dataset[index]


@DATA_SAMPLERS.register_module(force=True)
class EpochTaggedSampler:
    """A sampler (built from its config, like mmengine builds it) whose indices come tagged with the epoch."""

    def __init__(self, sampler: dict, dataset: Any, seed: int | None = None) -> None:
        self.sampler = DATA_SAMPLERS.build(sampler, default_args=dict(dataset=dataset, seed=seed))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def persistent(loader: Any) -> bool:
    """Whether a dataloader config keeps its workers from epoch to epoch."""
    return bool(loader.get("persistent_workers")) and loader.get("num_workers", 0) > 0


def epoch_seeded(loader: Any, seed: int, rank: int) -> Any:
    """A copy of a train dataloader config whose persistent workers draw per-epoch streams (unchanged otherwise,
    and when it uses its own batch sampler, which the tags would not pass through)."""
    if not persistent(loader) or loader.get("batch_sampler") is not None:
        return loader
    out = loader.copy()
    out.dataset = dict(type="EpochSeededDataset", dataset=loader.dataset, seed=seed, rank=rank)
    out.sampler = dict(type="EpochTaggedSampler", sampler=loader.get("sampler", dict(type="DefaultSampler")))
    return out
