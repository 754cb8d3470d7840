"""Stage 4 (eval) scoring: every ensemble mode of one batch from one forward per (model, image), and the
exact gathering of the ranks' results.

Which model scores what (s1 = raw image, s2 = projected image, all softmax scores):
- ``sda``: the original model on the raw image + the fine-tuned model on the projection;
- every other mode uses one model, the *single* model, on both images (and on the blend for
  ``*_fuse``). In the paper's tables Source (``first``) and DDA (``sum``) use the original model,
  so the single model is the original one by default. The reference used the positional
  checkpoint for these modes; ``single="finetuned"`` reproduces that with ``--originckpt`` given,
  and without ``--originckpt`` the positional checkpoint is the only model.
Each (model, image) pair is run once per image whatever the number of modes; fuse modes add one
forward of the blend each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from sda.eval import ensemble
from sda.eval.config import EvalConfig
from sda.eval.pairs import PairedImages, collate_pairs
from sda.finetune.classifiers import Normalizer
from sda.utils.errors import UserError, require_finite
from sda.utils.precision import autocast
from sda.utils.progress import progress

TOPK = 5


def mode_models(modes: Sequence[str], single: str) -> dict[str, str]:
    """What each mode scores, in words (written to the results)."""
    out = {}
    for m in modes:
        if m == "sda":
            out[m] = "original(raw) + finetuned(projected)"
        elif m == "diffpure":
            out[m] = f"{single}(DiffPure-purified)"
        elif m == "first":
            out[m] = f"{single}(raw)"
        elif m == "second":
            out[m] = f"{single}(projected)"
        elif m in ensemble.FUSE_MODES:
            out[m] = f"{single}(blend of raw and projected, weights from {single}(raw), {single}(projected))"
        else:
            out[m] = f"{m} of {single}(raw), {single}(projected)"
    return out


@dataclass
class EvalModels:
    """``single``: the model of every mode but ``sda``; ``original``/``finetuned``: those of ``sda``."""

    single: nn.Module
    original: nn.Module | None = None
    finetuned: nn.Module | None = None


def _label_rank(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """(N,) position of the label in the top-k (k when absent), as mmcls' top-k accuracy."""
    top = scores.topk(k, dim=1).indices  # (N, k)
    hit = top == labels[:, None]  # (N, k)
    return torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(labels, k))


@torch.no_grad()
def score_batch(
    models: EvalModels,
    modes: Sequence[str],
    x: dict[str, Tensor],
    labels: Tensor,
    precision: str = "fp32",
) -> dict[str, tuple[Tensor, Tensor]]:
    """Scores of every mode for one batch of normalized images ``x``: "raw", and "proj" (the projection) /
    "pur" (DiffPure's purification) when the modes need them.

    Returns {mode: (top-1 prediction (N,), rank of the label in the top-5 (N,))}.
    """
    x1, x2 = x["raw"], x.get("proj")
    cache: dict[tuple[int, str], Tensor] = {}

    def probs(model: nn.Module, which: str, x: Tensor) -> Tensor:
        key = (id(model), which)
        if key not in cache:
            with autocast(precision, x.device.type):
                logits = model(x, mode="tensor")  # (N, C)
            require_finite(logits, getattr(model, "sda_source", "a classifier"))
            cache[key] = logits.float().softmax(1)  # (N, C) softmax scores, as mmcls v0 returns
        return cache[key]

    out = {}
    for m in modes:
        if m == "sda":
            s = ensemble.sum_scores(probs(models.original, "raw", x1), probs(models.finetuned, "proj", x2), m)
        elif m == "first":
            s = probs(models.single, "raw", x1)
        elif m == "second":
            s = probs(models.single, "proj", x2)
        elif m == "diffpure":
            s = probs(models.single, "pur", x["pur"])
        elif m in ensemble.FUSE_MODES:
            w = ensemble.fuse_weights(probs(models.single, "raw", x1), probs(models.single, "proj", x2), m)
            s = probs(models.single, m, ensemble.fuse_images(x1, x2, w))  # (N, C) of the blend
        else:
            s = ensemble.combine(m, probs(models.single, "raw", x1), probs(models.single, "proj", x2))
        k = min(TOPK, s.shape[1])
        out[m] = (s.argmax(1), _label_rank(s, labels.to(s.device), k))
    return out


def run_scoring(
    dataset: PairedImages,
    indices: Sequence[int],
    models: EvalModels,
    normalizer: Normalizer,
    device: torch.device,
    cfg: EvalConfig,
) -> dict[str, np.ndarray]:
    """Score ``dataset[indices]``; returns arrays "index", "label" and per mode "pred/<m>", "rank/<m>"."""
    modes, precision = cfg.modes, cfg.precision(device.type)
    loader = DataLoader(
        Subset(dataset, list(indices)),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_pairs,
    )
    idx_parts, pred_parts, rank_parts = [], {m: [] for m in modes}, {m: [] for m in modes}
    with progress(total=len(indices), desc=f"eval {cfg.datatype}") as bar:
        for idx, views, err in loader:
            if err:
                raise UserError(err)
            labels = torch.from_numpy(dataset.labels[idx.numpy()])  # (N,)
            x = {v: normalizer(t.to(device, non_blocking=True)) for v, t in views.items()}  # (N, 3, H, W) each
            res = score_batch(models, modes, x, labels, precision)
            idx_parts.append(idx.numpy())
            for m in modes:
                pred_parts[m].append(res[m][0].cpu().numpy().astype(np.int32))
                rank_parts[m].append(res[m][1].cpu().numpy().astype(np.uint8))
            bar.update(len(idx))
    empty = [np.zeros(0, np.int64)]
    out = {"index": np.concatenate(idx_parts or empty).astype(np.int64)}
    out["label"] = dataset.labels[out["index"]]
    for m in modes:
        out[f"pred/{m}"] = np.concatenate(pred_parts[m] or empty).astype(np.int32)
        out[f"rank/{m}"] = np.concatenate(rank_parts[m] or empty).astype(np.uint8)
    return out


def predictions(logits: Tensor, labels: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 prediction, rank of the label in the top-5) of logits (N, C) as the table's arrays."""
    k = min(TOPK, logits.shape[1])
    return logits.argmax(1).numpy().astype(np.int32), _label_rank(logits, labels, k).numpy().astype(np.uint8)


def merge_parts(parts: Sequence[dict[str, np.ndarray]], total: int) -> dict[str, np.ndarray]:
    """Join the ranks' results in dataset order; every index must appear exactly once."""
    index = np.concatenate([p["index"] for p in parts])
    if len(index) != total or not np.array_equal(np.sort(index), np.arange(total)):
        raise RuntimeError(f"gathered {len(index)} results for {total} images (duplicates or gaps)")
    order = np.argsort(index)
    return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0]}
