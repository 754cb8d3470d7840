"""The mini benchmark's measurements of its premises: the source classifier on a folder, per class.

The demo (every seed) and ``mini/train_sources.py`` (once, for the manifest) measure the same gates with
these functions, on validation data only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sda.utils.io import list_images, load_rgb

BATCH = 128


def load_source_classifier(config: str | Path, checkpoint: str | Path) -> nn.Module:
    """The source classifier (eval mode, CPU) from its config and weights."""
    from sda.finetune.classifiers import build_classifier_from_config

    return build_classifier_from_config(str(config), checkpoint)


def classify_folder(model: nn.Module, root: Path) -> dict[str, Any]:
    """Top-1 (%) of ``model`` on a class-folder set ``root/<class:04d>/<image>``, overall and per class."""
    from sda.finetune.classifiers import classifier_logits

    files = list_images(root)
    labels = np.array([int(Path(f).parts[0]) for f in files])
    preds = []
    with torch.no_grad():
        for i in range(0, len(files), BATCH):
            x = np.stack([np.asarray(load_rgb(root / f)) for f in files[i : i + BATCH]])  # (B, H, W, 3)
            preds.append(classifier_logits(model, torch.from_numpy(x).permute(0, 3, 1, 2)).argmax(1).numpy())
    correct = np.concatenate(preds) == labels
    per_class = {int(c): 100.0 * float(correct[labels == c].mean()) for c in np.unique(labels)}
    return {"top1": 100.0 * float(correct.mean()), "per_class": per_class, "n": int(len(files))}


def mean_of(table: dict[str, float], names: tuple[str, ...]) -> float:
    """The mean of ``table``'s entries ``names`` (e.g. the noise corruptions of a top-1 table)."""
    return sum(table[n] for n in names) / len(names)
