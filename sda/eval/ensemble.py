"""Ensemble modes of SDA / DDA as pure functions of softmax scores.

Image 1 is the raw target image, image 2 its diffusion projection. Every input ``s1``/``s2`` is a
(N, C) tensor of softmax scores (what an mmcls v0 classifier returns in test mode). The reference
(SDA ``eval/evaluation.py``, DDA ``model_adapt/evaluation.py``) scores them as follows; we keep
its exact semantics:

- entropy and confidence are computed by applying softmax *again* to the softmax scores (the
  reference treats them as logits); the variance is the unbiased variance of the scores
  themselves over the classes;
- the select modes (``entropy``, ``confidence``, ``var``) pick the projected image on ties;
- ``entropy_sum = s1 * H(s2) + s2 * H(s1)`` and ``confidence_sum = s1 * c(s1) + s2 * c(s2)``;
- the ``*_fuse`` modes blend the two (normalized) images with softmax-normalized weights and
  classify the blend with the same single model; ``fuse_weights`` gives the weights.

Which model produced ``s1`` and ``s2`` is the caller's business (see ``sda.eval.scoring``).
"""

from __future__ import annotations

import torch
from torch import Tensor

SELECT_MODES = ("first", "second", "entropy", "confidence", "var")
SUM_MODES = ("sum", "entropy_sum", "confidence_sum")
FUSE_MODES = ("entropy_fuse", "confidence_fuse", "var_fuse")
# `sda` is `sum` with two different models: the original on image 1, the fine-tuned on image 2.
MODES = ("sda", *SUM_MODES, *SELECT_MODES, *FUSE_MODES)


def score_entropy(s: Tensor) -> Tensor:
    """Entropy of softmax(s) per row, (N, C) -> (N,). Softmax re-applied as in the reference."""
    return -(s.softmax(1) * s.log_softmax(1)).sum(1)  # (N,)


def score_confidence(s: Tensor) -> Tensor:
    """Max of softmax(s) per row, (N, C) -> (N,). Softmax re-applied as in the reference."""
    return s.softmax(1).max(1).values  # (N,)


def score_variance(s: Tensor) -> Tensor:
    """Unbiased variance of the scores over the classes, (N, C) -> (N,) (no extra softmax)."""
    return s.var(dim=1)  # (N,)


def pick_projected(s1: Tensor, s2: Tensor, mode: str) -> Tensor:
    """(N,) bool: True where select ``mode`` takes image 2 (the projection); ties pick image 2."""
    n = s1.shape[0]
    if mode == "first":
        return torch.zeros(n, dtype=torch.bool, device=s1.device)
    if mode == "second":
        return torch.ones(n, dtype=torch.bool, device=s1.device)
    if mode == "entropy":  # lower entropy wins
        return score_entropy(s1) >= score_entropy(s2)
    if mode == "confidence":  # higher confidence wins
        return score_confidence(s1) <= score_confidence(s2)
    if mode == "var":  # higher variance wins
        return score_variance(s1) <= score_variance(s2)
    raise ValueError(f"not a select mode: {mode!r} (one of {SELECT_MODES})")


def select_scores(s1: Tensor, s2: Tensor, mode: str) -> Tensor:
    """Per-image choice between the two score rows, (N, C) x 2 -> (N, C)."""
    take2 = pick_projected(s1, s2, mode)[:, None]  # (N, 1)
    return torch.where(take2, s2, s1)  # (N, C)


def sum_scores(s1: Tensor, s2: Tensor, mode: str) -> Tensor:
    """``sum``/``sda``: s1 + s2; ``entropy_sum``: s1 H(s2) + s2 H(s1); ``confidence_sum``: s1 c1 + s2 c2."""
    if mode in ("sum", "sda"):
        return s1 + s2  # (N, C)
    if mode == "entropy_sum":
        return s1 * score_entropy(s2)[:, None] + s2 * score_entropy(s1)[:, None]  # (N, C)
    if mode == "confidence_sum":
        return s1 * score_confidence(s1)[:, None] + s2 * score_confidence(s2)[:, None]  # (N, C)
    raise ValueError(f"not a sum mode: {mode!r} (one of {SUM_MODES} or 'sda')")


def fuse_weights(s1: Tensor, s2: Tensor, mode: str) -> Tensor:
    """(N, 2) weights of image 1 and image 2 for a fuse mode; each row sums to 1.

    ``entropy_fuse``: softmax([H(s2), H(s1)]) (the lower-entropy image gets the larger weight);
    ``confidence_fuse``: softmax([c(s1), c(s2)]); ``var_fuse``: softmax([var(s1), var(s2)]).
    """
    if mode == "entropy_fuse":
        a, b = score_entropy(s2), score_entropy(s1)
    elif mode == "confidence_fuse":
        a, b = score_confidence(s1), score_confidence(s2)
    elif mode == "var_fuse":
        a, b = score_variance(s1), score_variance(s2)
    else:
        raise ValueError(f"not a fuse mode: {mode!r} (one of {FUSE_MODES})")
    return torch.stack((a, b), 1).softmax(1)  # (N, 2)


def fuse_images(x1: Tensor, x2: Tensor, w: Tensor) -> Tensor:
    """Blend two image batches (N, ...) with (N, 2) weights from ``fuse_weights``."""
    shape = (-1,) + (1,) * (x1.dim() - 1)
    w = w.to(x1.dtype)
    return x1 * w[:, 0].reshape(shape) + x2 * w[:, 1].reshape(shape)  # (N, ...)


def combine(mode: str, s1: Tensor, s2: Tensor) -> Tensor:
    """Final scores of a select or sum mode (fuse modes need a forward of the blend: see ``fuse_images``)."""
    if mode in SELECT_MODES:
        return select_scores(s1, s2, mode)
    if mode in SUM_MODES or mode == "sda":
        return sum_scores(s1, s2, mode)
    if mode in FUSE_MODES:
        raise ValueError(f"{mode!r} classifies a blended image: use fuse_weights + fuse_images")
    raise ValueError(f"unknown ensemble mode {mode!r} (one of {MODES})")
