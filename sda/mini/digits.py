"""The ``digits`` mini benchmark's data: scikit-learn's 8x8 digits as 32x32 RGB PNGs in class-folder layout.

The digits ship inside scikit-learn (1797 images, 10 classes, values 0..16), so nothing is
downloaded. Each 8x8 grid is upsampled by 4 with the cubic kernel (Keys, a = -0.5) of the
``resize_right`` package, i.e. exactly the upsampling half of DDA's low-pass filter (cubic
downsample by D = 4, cubic upsample by 4). The images therefore hold no detail above the
filter's 8x8 bottleneck: the low-pass guidance sees the native resolution of the data.

Layout written by :func:`prepare_digits`::

    <out>/<split>/<class:04d>/<index:06d>.png   split in (train, val, test); index = sklearn index

``train`` is the source-train split (the only data the source models see), ``val`` chooses the
settings, ``test`` is the target-test split. The "-C" sets are built from val/test by
:func:`sda.mini.data.build_corrupted_splits`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from sda.utils.errors import UserError
from sda.utils.io import save_image, write_json

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.5, 0.2, 0.3)  # train / val / test, per class
NATIVE_SIZE = 8  # sklearn digits are 8x8
UPSAMPLE = 4  # = DDA's low-pass factor D, so 8 * 4 = 32 px
IMAGE_SIZE = NATIVE_SIZE * UPSAMPLE
NUM_CLASSES = 10


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float64 in 0..16, labels (1797,) int64) from scikit-learn."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float64), d.target.astype(np.int64)


def stratified_split(
    labels: np.ndarray, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, np.ndarray]:
    """Per-class shuffled split of the indices into train/val/test (sorted index arrays).

    Class c with n images gets round(f_train * n) train and round(f_val * n) val images; the
    rest are test. The shuffle depends only on ``seed`` and the class.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise UserError(f"split fractions {tuple(fractions)} must be three non-negative numbers summing to 1")
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = np.random.default_rng([seed, int(c)]).permutation(idx)
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def upsample_digits(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) values 0..16 -> (N, 32, 32, 3) uint8 RGB (cubic x4, resize_right's kernel)."""
    from resize_right import interp_methods, resize

    x = images.astype(np.float64) / 16.0  # (N, 8, 8) in [0, 1]
    x = resize(x, scale_factors=[1, UPSAMPLE, UPSAMPLE], interp_method=interp_methods.cubic)  # (N, 32, 32)
    x = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)  # cubic overshoot is clipped
    return np.repeat(x[..., None], 3, axis=-1)  # (N, 32, 32, 3)


def prepare_digits(
    out: str | os.PathLike,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    splits: Sequence[str] = SPLITS,
) -> dict:
    """Write the clean PNGs of ``splits`` under ``out``; returns the split summary (also ``out/split.json``).

    Deterministic: the same seed gives the same files, byte for byte. Existing files are overwritten.
    """
    out = Path(out)
    images, labels = load_digits_arrays()
    rgb = upsample_digits(images)  # (N, 32, 32, 3)
    split = stratified_split(labels, seed, fractions)
    for name in splits:
        for i in split[name]:
            path = out / name / f"{labels[i]:04d}" / f"{i:06d}.png"
            save_image(Image.fromarray(rgb[i], mode="RGB"), path)
    summary = {
        "dataset": "sklearn.datasets.load_digits (8x8, 1797 images) upsampled x4 cubic (resize_right) to 32x32 RGB",
        "seed": seed,
        "fractions": dict(zip(SPLITS, map(float, fractions), strict=True)),
        "counts": {s: {str(c): int((labels[idx] == c).sum()) for c in range(NUM_CLASSES)} for s, idx in split.items()},
        "sizes": {s: int(len(idx)) for s, idx in split.items()},
        "indices": {s: idx.tolist() for s, idx in split.items()},
    }
    write_json(out / "split.json", summary)
    return summary
