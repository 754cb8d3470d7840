"""BN-adapt: re-estimate a classifier's BatchNorm statistics on an unlabelled image folder.

A label-free control for SDA's fine-tuning: if the fine-tuned model's gain on projected
images came only from BatchNorm statistics moving to the synthetic domain, a model that
keeps the source weights but re-estimates its BatchNorm statistics on the same aligned
synthetic set would gain as much.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from sda.finetune.config import BNAdaptConfig
from sda.utils.errors import UserError
from sda.utils.io import list_images


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_bn_statistics(model: nn.Module, batches: Any) -> int:
    """Replace every BatchNorm's running mean/var by the average of its per-batch statistics.

    ``batches`` yields normalised inputs (N, C, H, W) for ``model(x, mode="tensor")``.
    Weights and biases are untouched; returns the number of images seen.
    """
    layers = _bn_layers(model)
    if not layers:
        raise UserError("the model has no BatchNorm layers; BN-adapt needs a model with BatchNorm")
    saved = [(m.momentum, m.training) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch weighs the same
    model.eval()
    for m in layers:
        m.train()
    seen = 0
    try:
        for x in batches:
            model(x, mode="tensor")
            seen += x.shape[0]
    finally:
        for m, (momentum, training) in zip(layers, saved, strict=True):
            m.momentum = momentum
            m.train(training)
    if seen == 0:
        raise UserError("no images to estimate BatchNorm statistics from")
    return seen


def folder_batches(cfg: Any, root: str | os.PathLike, batch_size: int, device: torch.device) -> Any:
    """Normalised batches of every image under ``root`` through the config's test pipeline."""
    from sda.finetune.classifiers import Normalizer, build_pipeline

    pipeline, norm = build_pipeline(cfg), Normalizer.from_config(cfg)
    files = list_images(root)
    if not files:
        raise UserError(f"no images under {root}; expected <class>/<image> files")
    for i in range(0, len(files), batch_size):
        # the same loading as evaluation: the config's pipeline from the file path
        xs = [pipeline({"img_path": os.path.join(root, rel)})["inputs"] for rel in files[i : i + batch_size]]
        yield norm(torch.stack(xs).to(device))  # (N, 3, H, W)


def bn_adapt(c: BNAdaptConfig) -> int:
    """``finetune/bn_adapt.py``: the source's BatchNorm statistics re-estimated on ``c.data_root``, written as an
    MMPreTrain-format checkpoint that eval loads like a fine-tuned one. Returns the number of images seen."""
    from sda.finetune.classifiers import build_classifier_from_config, load_config
    from sda.utils.checkpoint import file_sha256
    from sda.utils.io import atomic_write

    cfg = load_config(c.config)
    model = build_classifier_from_config(cfg, c.checkpoint, device=c.device, allow_pickle=c.allow_pickle)
    seen = adapt_bn_statistics(model, folder_batches(cfg, c.data_root, c.batch_size, torch.device(c.device)))
    meta = {
        "bn_adapt": {
            "source": str(c.checkpoint),
            "source_sha256": file_sha256(c.checkpoint),
            "data_root": str(c.data_root),
            "images": seen,
        }
    }
    with atomic_write(c.out) as f:
        torch.save({"meta": meta, "state_dict": model.state_dict()}, f)
    print(f"BN statistics re-estimated on {seen} images -> {c.out}")
    return seen
