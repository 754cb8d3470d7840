"""Stage 4: score raw and projected target images with the SDA / DDA ensembles.

Data layout (checked when read):
- ImageNet-C style (``datatype="C"``): ``<root>/<corruption>/<severity>/<class>/<image>``;
- ImageNet-W style (``datatype="W"``): ``<root>/val/<class>/<image>``.
The label of an image is the index of its class folder in the sorted folder list of the raw set
(1000 wnids for ImageNet). A raw image and its projection are paired by relative path (the
reference paired them by list position).

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

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sda import ensemble
from sda.corruptions import check_corruptions
from sda.utils.errors import UserError
from sda.utils.io import list_images

METHOD_NAMES = {"first": "Source", "second": "Projected", "sum": "DDA", "sda": "SDA"}
TOPK = 5


# ----------------------------------------------------------------------------- data layout
@dataclass
class SubsetPairs:
    """One target subset (a corruption at a severity, or ImageNet-W) and its paired images."""

    key: str  # "gaussian_noise/5" or "val"
    corruption: str
    severity: int | None
    raw_dir: Path
    proj_dir: Path | None
    classes: list[str]
    rels: list[str]  # paired relative paths "<class>/<file>"
    counts: dict[str, int] = field(default_factory=dict)


def class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; check --data_prefix1/--data_prefix2 and the layout")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _few(xs: Sequence[str], n: int = 3) -> str:
    return ", ".join(xs[:n]) + (f" (+{len(xs) - n} more)" if len(xs) > n else "")


def pair_images(raw_dir: Path, proj_dir: Path | None, allow_missing: bool = False) -> tuple[list[str], dict]:
    """Relative paths present in both folders; a missing or extra projection is an error naming it.

    With ``allow_missing`` the intersection is used and the counts report what was left out.
    """
    raw = [r for r in list_images(raw_dir) if "/" in r]
    if not raw:
        raise UserError(f"no images in class folders under {raw_dir}; expected <class>/<image> below it")
    if proj_dir is None:
        return raw, {"raw": len(raw), "paired": len(raw)}
    proj = [r for r in list_images(proj_dir) if "/" in r] if proj_dir.is_dir() else []
    proj_set, raw_set = set(proj), set(raw)
    missing = [r for r in raw if r not in proj_set]
    extra = [r for r in proj if r not in raw_set]
    counts = {"raw": len(raw), "projected": len(proj), "missing": len(missing), "extra": len(extra)}
    if (missing or extra) and not allow_missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} raw images have no projection in {proj_dir} (e.g. {_few(missing)})")
        if extra:
            parts.append(f"{len(extra)} projected images have no raw image in {raw_dir} (e.g. {_few(extra)})")
        raise UserError(
            "; ".join(parts) + "; finish the projection or pass --allow-missing to score the images present in both"
        )
    paired = [r for r in raw if r in proj_set]
    if not paired:
        raise UserError(f"no image of {raw_dir} has a projection in {proj_dir}; check --data_prefix2")
    counts["paired"] = len(paired)
    return paired, counts


def build_subsets(
    datatype: str,
    raw_root: str | Path,
    proj_root: str | Path | None,
    corruptions: Sequence[str] = ("all",),
    severities: Sequence[int] = (5,),
    allow_missing: bool = False,
) -> list[SubsetPairs]:
    """Subsets of a C or W layout with their paired images, in table order."""
    raw_root = Path(raw_root)
    proj_root = Path(proj_root) if proj_root is not None else None
    if datatype == "C":
        names = check_corruptions(corruptions)
        for s in severities:
            if s not in (1, 2, 3, 4, 5):
                raise UserError(f"severity {s} is not in 1..5")
        specs = [(f"{c}/{s}", c, s, Path(c) / str(s)) for s in severities for c in names]
    elif datatype == "W":
        specs = [("val", "ImageNet-W", None, Path("val"))]
    else:
        raise UserError(f"--datatype must be C or W, got {datatype!r}")
    subsets = []
    for key, corr, sev, sub in specs:
        raw_dir = raw_root / sub
        proj_dir = proj_root / sub if proj_root is not None else None
        classes = class_folders(raw_dir)
        rels, counts = pair_images(raw_dir, proj_dir, allow_missing)
        subsets.append(SubsetPairs(key, corr, sev, raw_dir, proj_dir, classes, rels, counts))
    return subsets


class PairedImages(Dataset):
    """(index, raw image, projected image) tensors from an mmpretrain test pipeline.

    Images come out as the pipeline packs them: uint8 (3, H, W) in the loader's channel order
    (BGR for mmcv's LoadImageFromFile); ``Normalizer`` converts and normalizes on the device.
    A missing projection (no projected image needed) gives an empty tensor.
    """

    def __init__(self, subsets: Sequence[SubsetPairs], pipeline: Callable[[dict], dict], with_proj: bool):
        self.items = [(si, rel) for si, s in enumerate(subsets) for rel in s.rels]
        lookup = [{c: k for k, c in enumerate(s.classes)} for s in subsets]
        self.labels = np.array([lookup[si][rel.split("/")[0]] for si, rel in self.items], dtype=np.int64)
        self.subsets, self.pipeline, self.with_proj = subsets, pipeline, with_proj

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, path: Path) -> Tensor:
        return self.pipeline({"img_path": str(path)})["inputs"]  # (3, H, W) uint8

    def __getitem__(self, i: int) -> tuple[int, Tensor, Tensor]:
        si, rel = self.items[i]
        s = self.subsets[si]
        raw = self._load(s.raw_dir / rel)
        proj = self._load(s.proj_dir / rel) if self.with_proj else torch.empty(0)
        return i, raw, proj


def build_pipeline(cfg: Any) -> Callable[[dict], dict]:
    """The test pipeline of an mmengine config (``test_pipeline`` or the test dataloader's)."""
    import mmpretrain.datasets  # noqa: F401  (registers the transforms)
    from mmcv.transforms import Compose
    from mmpretrain.registry import TRANSFORMS

    steps = cfg.get("test_pipeline")
    if steps is None:
        steps = (cfg.get("test_dataloader") or {}).get("dataset", {}).get("pipeline")
    if not steps:
        raise UserError("the config has no test_pipeline; use one of configs/eval/*.py")
    return Compose([TRANSFORMS.build(dict(t)) for t in steps])


class Normalizer:
    """The config's data_preprocessor normalization: (x[, BGR->RGB] - mean) / std, on the device."""

    def __init__(self, cfg: Any):
        dp = (cfg.get("model") or {}).get("data_preprocessor") or cfg.get("data_preprocessor")
        if not dp or dp.get("mean") is None or dp.get("std") is None:
            raise UserError("the config has no data_preprocessor mean/std; use one of configs/eval/*.py")
        self.mean = torch.tensor(dp["mean"], dtype=torch.float32).view(1, -1, 1, 1)  # (1, 3, 1, 1)
        self.std = torch.tensor(dp["std"], dtype=torch.float32).view(1, -1, 1, 1)  # (1, 3, 1, 1)
        self.to_rgb = bool(dp.get("to_rgb", False) or dp.get("bgr_to_rgb", False))

    def __call__(self, x: Tensor) -> Tensor:
        x = x.float()  # (N, 3, H, W)
        if self.to_rgb:
            x = x.flip(1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)  # (N, 3, H, W)


# ----------------------------------------------------------------------------- models
def load_classifier(cfg: Any, ckpt: str, device: torch.device, allow_pickle: bool = False) -> nn.Module:
    """An mmpretrain ImageClassifier from the config with the checkpoint's weights (mmcls v0 or
    mmpretrain 1.x), in eval mode on ``device``."""
    from sda.classifiers import build_classifier_from_config

    return build_classifier_from_config(cfg, ckpt_path=ckpt, device=device, allow_pickle=allow_pickle)


def num_classes_of(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    return getattr(head, "num_classes", None)


# ----------------------------------------------------------------------------- planning
def parse_modes(text: str | Sequence[str]) -> list[str]:
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for n in (x.strip() for x in names):
        if n == "all":
            out.extend(m for m in ensemble.MODES if m not in out)
        elif n not in ensemble.MODES:
            raise UserError(f"unknown ensemble mode {n!r}; valid: all, {', '.join(ensemble.MODES)}")
        elif n not in out:
            out.append(n)
    return out


def needs_projection(modes: Sequence[str]) -> bool:
    return any(m != "first" for m in modes)


def mode_models(modes: Sequence[str], single: str) -> dict[str, str]:
    """What each mode scores, in words (written to the results)."""
    out = {}
    for m in modes:
        if m == "sda":
            out[m] = "original(raw) + finetuned(projected)"
        elif m == "first":
            out[m] = f"{single}(raw)"
        elif m == "second":
            out[m] = f"{single}(projected)"
        elif m in ensemble.FUSE_MODES:
            out[m] = f"{single}(blend of raw and projected, weights from {single}(raw), {single}(projected))"
        else:
            out[m] = f"{m} of {single}(raw), {single}(projected)"
    return out


# ----------------------------------------------------------------------------- scoring
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
    x1: Tensor,
    x2: Tensor | None,
    labels: Tensor,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Scores of every mode for one batch of normalized images x1 (raw) and x2 (projected).

    Returns {mode: (top-1 prediction (N,), rank of the label in the top-5 (N,))}.
    """
    cache: dict[tuple[int, str], Tensor] = {}

    def probs(model: nn.Module, which: str, x: Tensor) -> Tensor:
        key = (id(model), which)
        if key not in cache:
            with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x, mode="tensor")  # (N, C)
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
    modes: Sequence[str],
    normalizer: Normalizer,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 4,
    amp_dtype: torch.dtype | None = None,
    desc: str = "eval",
) -> dict[str, np.ndarray]:
    """Score ``dataset[indices]``; returns arrays "index", "label" and per mode "pred/<m>", "rank/<m>"."""
    from torch.utils.data import Subset

    from sda.utils.progress import progress

    loader = DataLoader(
        Subset(dataset, list(indices)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    idx_parts, pred_parts, rank_parts = [], {m: [] for m in modes}, {m: [] for m in modes}
    bar = progress(total=len(indices), desc=desc)
    for idx, raw, proj in loader:
        labels = torch.from_numpy(dataset.labels[idx.numpy()])  # (N,)
        x1 = normalizer(raw.to(device, non_blocking=True))  # (N, 3, H, W)
        x2 = normalizer(proj.to(device, non_blocking=True)) if dataset.with_proj else None
        res = score_batch(models, modes, x1, x2, labels, amp_dtype)
        idx_parts.append(idx.numpy())
        for m in modes:
            pred_parts[m].append(res[m][0].cpu().numpy().astype(np.int32))
            rank_parts[m].append(res[m][1].cpu().numpy().astype(np.uint8))
        bar.update(len(idx))
    bar.close()
    empty = [np.zeros(0, np.int64)]
    out = {"index": np.concatenate(idx_parts or empty).astype(np.int64)}
    out["label"] = dataset.labels[out["index"]]
    for m in modes:
        out[f"pred/{m}"] = np.concatenate(pred_parts[m] or empty).astype(np.int32)
        out[f"rank/{m}"] = np.concatenate(rank_parts[m] or empty).astype(np.uint8)
    return out


def merge_parts(parts: Sequence[dict[str, np.ndarray]], total: int) -> dict[str, np.ndarray]:
    """Join the ranks' results in dataset order; every index must appear exactly once."""
    index = np.concatenate([p["index"] for p in parts])
    if len(index) != total or not np.array_equal(np.sort(index), np.arange(total)):
        raise RuntimeError(f"gathered {len(index)} results for {total} images (duplicates or gaps)")
    order = np.argsort(index)
    return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0]}


# ----------------------------------------------------------------------------- summaries
def summarize(
    subsets: Sequence[SubsetPairs], dataset: PairedImages, merged: dict[str, np.ndarray], modes: Sequence[str]
) -> dict[str, Any]:
    """Per-subset top-1/top-5 accuracy (%) of every mode and the mean over corruptions per severity."""
    subset_of = np.array([si for si, _ in dataset.items], dtype=np.int64)[merged["index"]]
    results: dict[str, Any] = {}
    for si, s in enumerate(subsets):
        sel = subset_of == si
        n = int(sel.sum())
        entry = {"corruption": s.corruption, "severity": s.severity, "n": n, "counts": s.counts, "top1": {}, "top5": {}}
        for m in modes:
            r = merged[f"rank/{m}"][sel]
            entry["top1"][m] = 100.0 * float((r == 0).mean())
            entry["top5"][m] = 100.0 * float((r < TOPK).mean())
        results[s.key] = entry
    means: dict[str, Any] = {}
    sevs = sorted({s.severity for s in subsets if s.severity is not None})
    for sev in sevs:
        keys = [s.key for s in subsets if s.severity == sev]
        means[str(sev)] = {
            t: {m: float(np.mean([results[k][t][m] for k in keys])) for m in modes} for t in ("top1", "top5")
        }
    return {"results": results, "mean": means}


def method_label(mode: str, single: str) -> str:
    if mode == "sda" or single == "original":
        return METHOD_NAMES.get(mode, mode)
    return f"{mode} ({single})"


def markdown_tables(summary: dict[str, Any], modes: Sequence[str], single: str, datatype: str) -> str:
    """Paper-style tables: one row per corruption and the mean, one column per method."""
    heads = [method_label(m, single) for m in modes]
    results = summary["results"]
    lines: list[str] = []
    for metric, title in (("top1", "top-1"), ("top5", "top-5")):
        if datatype == "W":
            groups = [("ImageNet-W", [(k, "ImageNet-W") for k in results], None)]
        else:
            groups = []
            for sev, mean in summary["mean"].items():
                rows = [(k, e["corruption"]) for k, e in results.items() if str(e["severity"]) == sev]
                groups.append((f"severity {sev}", rows, mean))
        for name, rows, mean in groups:
            lines += [
                f"**{name}, {title} accuracy (%)**",
                "",
                "| " + " | ".join(["corruption" if datatype == "C" else "set", *heads]) + " |",
                "|" + "---|" * (len(heads) + 1),
            ]
            for key, label in rows:
                lines.append("| " + " | ".join([label] + [f"{results[key][metric][m]:.2f}" for m in modes]) + " |")
            if mean is not None and len(rows) > 1:
                lines.append("| " + " | ".join(["mean"] + [f"{mean[metric][m]:.2f}" for m in modes]) + " |")
            lines.append("")
    return "\n".join(lines)


def csv_rows(summary: dict[str, Any], modes: Sequence[str], single: str, datatype: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["datatype", "corruption", "severity", "mode", "method", "top1", "top5", "n"])
    for e in summary["results"].values():
        for m in modes:
            w.writerow(
                [
                    datatype,
                    e["corruption"],
                    "" if e["severity"] is None else e["severity"],
                    m,
                    method_label(m, single),
                    f"{e['top1'][m]:.4f}",
                    f"{e['top5'][m]:.4f}",
                    e["n"],
                ]
            )
    for sev, mean in summary["mean"].items():
        for m in modes:
            w.writerow(
                [
                    datatype,
                    "mean",
                    sev,
                    m,
                    method_label(m, single),
                    f"{mean['top1'][m]:.4f}",
                    f"{mean['top5'][m]:.4f}",
                    "",
                ]
            )
    return buf.getvalue()


def check_num_classes(subsets: Sequence[SubsetPairs], n: int | None) -> None:
    """The sorted class folders are the labels: their number must be the head's ``num_classes``."""
    if n is None:
        return
    for s in subsets:
        if n != len(s.classes):
            raise UserError(
                f"{s.raw_dir} has {len(s.classes)} class folders but the model has {n} classes; "
                "the sorted class folders are the labels, so they must match the model's head"
            )
