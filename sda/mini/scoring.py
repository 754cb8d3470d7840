"""Classifier outputs on image folders, cached on disk, and the table's columns as per-image correctness.

The mini study and the powered test score many fine-tuned models on the same projected sets. Each (model,
image set) pair is computed once (softmax outputs or penultimate features, float32, in the order of the
set's file list) and kept in ``<cache>/<model sha256[:16]>-<set>-<kind>.npy``; every column (Source, DDA,
SDA, ...) is then a per-image correctness array made with the eval stage's ensemble (``sda.eval.ensemble``),
the same code ``eval/evaluate.py`` runs, so the columns equal eval's (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sda.utils.checkpoint import file_sha256
from sda.utils.io import list_images, load_rgb

BATCH = 256


@dataclass(frozen=True)
class ImageSet:
    """A class-folder image set: ``root / files[i]``, each ``.../<class:04d>/<name>``; ``name`` keys the cache."""

    name: str
    root: Path
    files: tuple[str, ...]

    @classmethod
    def folder(cls, name: str, root: Path) -> ImageSet:
        return cls(name, root, tuple(list_images(root)))

    def moved(self, name: str, root: Path) -> ImageSet:
        """The same relative files under another root (e.g. the projections of this set)."""
        return ImageSet(name, root, self.files)

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(Path(f).parts[-2]) for f in self.files])  # (I,)

    @property
    def base_images(self) -> np.ndarray:
        """Each file's clean base image (``<class>/<name>``): its corrupted and projected versions share it."""
        return np.array(["/".join(Path(f).parts[-2:]) for f in self.files])  # (I,)

    def pixels(self, start: int, stop: int) -> torch.Tensor:
        x = np.stack([np.asarray(load_rgb(self.root / f)) for f in self.files[start:stop]])  # (B, H, W, 3)
        return torch.from_numpy(x).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8


def model_outputs(model: nn.Module, images: ImageSet, kind: str = "softmax") -> np.ndarray:
    """Softmax (I, classes) or penultimate features (I, D) of ``model`` on every image of the set."""
    from sda.finetune.classifiers import classifier_features, classifier_logits

    out = []
    for i in range(0, len(images.files), BATCH):
        x = images.pixels(i, i + BATCH)
        y = classifier_features(model, x) if kind == "features" else classifier_logits(model, x).softmax(1)
        out.append(y.float().numpy())
    return np.concatenate(out)


class Scores:
    """Cached :func:`model_outputs` of checkpoints (loaded with one config) on image sets."""

    def __init__(self, cache: Path, config: Path):
        self.cache, self.config = cache, config
        self._models: dict[Path, tuple[str, nn.Module]] = {}
        cache.mkdir(parents=True, exist_ok=True)

    def _model(self, ckpt: Path) -> tuple[str, nn.Module]:
        if ckpt not in self._models:
            from sda.finetune.classifiers import build_classifier_from_config

            self._models[ckpt] = (file_sha256(ckpt)[:16], build_classifier_from_config(str(self.config), ckpt))
        return self._models[ckpt]

    def __call__(self, ckpt: Path, images: ImageSet, kind: str = "softmax") -> np.ndarray:
        from sda.utils.io import atomic_write

        key, model = self._model(ckpt)
        path = self.cache / f"{key}-{images.name}-{kind}.npy"
        if path.is_file():
            return np.load(path)
        out = model_outputs(model, images, kind)
        with atomic_write(path) as f:
            np.save(f, out)
        return out

    def forget(self, ckpt: Path) -> None:
        """Drop a loaded model (the cache on disk stays)."""
        self._models.pop(ckpt, None)


def correct(mode: str, s1: np.ndarray, s2: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-image correctness (I,) of an ensemble ``mode`` of softmax outputs (``sda.eval.ensemble.combine``):
    ``s1`` of the raw images, ``s2`` of their projections (for SDA, from the fine-tuned model)."""
    from sda.eval.ensemble import combine

    scores = combine(mode, torch.from_numpy(s1), torch.from_numpy(s2))  # (I, classes)
    return (scores.argmax(1).numpy() == labels).astype(np.float64)


def top1(s: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-image correctness (I,) of one model's softmax outputs."""
    return (s.argmax(1) == labels).astype(np.float64)
