"""Persistent data-loader workers with per-epoch random streams (sda.finetune.workers): an epoch's augmentations
do not depend on how many epochs the workers lived through, so a resumed fine-tune can equal an uninterrupted one."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sda.finetune.workers import EpochSeededDataset, EpochTaggedSampler, epoch_seeded, worker_seed


class Draws:
    """A 'dataset' whose items are what an augmentation would draw: Python's, NumPy's and torch's generators."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> tuple[int, float, float, float]:
        return i, random.random(), float(np.random.rand()), float(torch.rand(()))


def _epochs(dataset, sampler, first: int, last: int) -> dict[int, list]:
    """One loader with 2 persistent workers run over epochs first..last: each epoch's items by index."""
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2, persistent_workers=True)
    out = {}
    for epoch in range(first, last + 1):
        sampler.set_epoch(epoch)
        items = [row for batch in loader for row in zip(*(t.tolist() for t in batch), strict=True)]
        out[epoch] = sorted(items)
    return out


def _sampler(dataset, wrapped: bool):
    sampler = dict(type="DefaultSampler", shuffle=True)
    if wrapped:
        return EpochTaggedSampler(sampler, dataset, seed=3)
    from mmengine.registry import DATA_SAMPLERS

    return DATA_SAMPLERS.build(sampler, default_args=dict(dataset=dataset, seed=3))


def test_an_epoch_draws_the_same_whether_resumed_or_not() -> None:
    seeded = EpochSeededDataset(Draws(), seed=7)
    through = _epochs(seeded, _sampler(seeded, True), 0, 2)
    resumed = _epochs(seeded, _sampler(seeded, True), 2, 2)  # new workers, started at epoch 2
    assert resumed[2] == through[2]
    assert through[0] != through[1] != through[2]  # each epoch still draws fresh numbers

    plain = Draws()  # mmengine's own: the workers' streams depend on their age
    through, resumed = _epochs(plain, _sampler(plain, False), 0, 2), _epochs(plain, _sampler(plain, False), 2, 2)
    assert [r[0] for r in resumed[2]] == [r[0] for r in through[2]] and resumed[2] != through[2]


def test_streams_differ_by_seed_epoch_rank_and_worker() -> None:
    seeds = {worker_seed(s, e, r, w) for s in (0, 1) for e in (0, 1) for r in (0, 1) for w in (0, 1)}
    assert len(seeds) == 16


def test_only_persistent_workers_are_rewritten() -> None:
    from mmengine.config import ConfigDict

    base = ConfigDict(batch_size=2, num_workers=2, persistent_workers=True, dataset=dict(type="CustomDataset"))
    out = epoch_seeded(base, seed=5, rank=1)
    assert out.dataset == dict(type="EpochSeededDataset", dataset=base.dataset, seed=5, rank=1)
    assert out.sampler == dict(type="EpochTaggedSampler", sampler=dict(type="DefaultSampler"))
    assert base.dataset == dict(type="CustomDataset")  # the given config is left as it was
    for other in (dict(persistent_workers=False), dict(num_workers=0), dict(batch_sampler=dict(type="X"))):
        cfg = ConfigDict({**base, **other})
        assert epoch_seeded(cfg, seed=5, rank=0) is cfg


@pytest.mark.parametrize("name", ["metainfo", "full_init"])
def test_the_wrapper_passes_on_what_mmengine_reads(name: str) -> None:
    class Named(Draws):
        metainfo = {"classes": ("a", "b")}

        def full_init(self) -> str:
            return "done"

    wrapped = EpochSeededDataset(Named(), seed=0)
    assert getattr(wrapped, name) is not None and len(wrapped) == 12
    assert wrapped[(0, 3)][0] == 3  # in the training process (no worker): no reseeding
    assert wrapped[5][0] == 5  # a plain index, as a hook might read one
