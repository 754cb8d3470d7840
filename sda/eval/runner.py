"""Stage 4 (eval) runner: load the models once, score every subset in one pass, gather exactly, report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sda.eval import tables
from sda.eval.config import DIFFPURE, EvalConfig
from sda.eval.pairs import PairedImages, Roots, build_subsets, check_num_classes
from sda.eval.scoring import EvalModels, merge_parts, mode_models, predictions, run_scoring
from sda.eval.tta import adapt_subset, cost_estimate, has_batchnorm
from sda.finetune.classifiers import (
    Normalizer,
    build_classifier_from_config,
    build_pipeline,
    head_num_classes,
    load_config,
    num_classes_of,
)
from sda.utils.dist import DistInfo, all_gather_object, cleanup, init_distributed, rank0_plan, shard, shard_batches
from sda.utils.errors import UserError
from sda.utils.io import check_writable_file, remove_own_partials, write_json, write_text
from sda.utils.progress import log, progress


def setup_device(cfg: EvalConfig) -> DistInfo:
    """torchrun's process group with ``--launcher pytorch``; otherwise one process on the chosen device."""
    if cfg.launcher == "pytorch":
        return init_distributed(cfg.device)
    want = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return DistInfo(0, 1, 0, torch.device(want), False)


def load_models(cfg: EvalConfig, mm_cfg: Any, device: torch.device) -> tuple[EvalModels, list[nn.Module]]:
    """Each checkpoint loaded once: the single model (every mode but sda) and sda's two models."""
    loaded: dict[str, nn.Module] = {}

    def get(path: str) -> nn.Module:
        if path not in loaded:
            loaded[path] = build_classifier_from_config(mm_cfg, path, device=device, allow_pickle=cfg.allow_pickle)
            loaded[path].sda_source = f"checkpoint {path}"  # what scoring names when its outputs are not finite
        return loaded[path]

    others = [m for m in cfg.modes if m != "sda"]
    models = EvalModels(single=get(cfg.single_checkpoint) if others else None)
    if "sda" in cfg.modes:
        models.original, models.finetuned = get(cfg.originckpt), get(cfg.checkpoint)
    if cfg.tta.methods and cfg.originckpt:  # the adaptation baselines start from the original model
        models.original = get(cfg.originckpt)
    return models, list(loaded.values())


def evaluate(cfg: EvalConfig) -> dict[str, Any] | None:
    """Score the raw (and projected) target sets with every mode; the record on rank 0, None elsewhere."""
    if cfg.out:  # before the scoring pass, not after it
        check_writable_file(cfg.out, "--out")
        for suffix in OUT_SUFFIXES:  # what a run killed while writing them left (this project's own temp names)
            remove_own_partials(Path(cfg.out).with_suffix(suffix))
    mm_cfg = load_config(cfg.config, cfg.cfg_options)
    info = setup_device(cfg)
    try:
        return _evaluate(cfg, mm_cfg, info)
    finally:
        cleanup()


def _evaluate(cfg: EvalConfig, mm_cfg: Any, info: DistInfo) -> dict[str, Any] | None:
    roots = Roots(
        Path(cfg.data_prefix1),
        Path(cfg.data_prefix2) if cfg.with_projection else None,
        Path(cfg.data_prefix_diffpure) if DIFFPURE in cfg.modes else None,
    )
    subsets = rank0_plan(  # every rank scores the same pairs, listed once
        lambda: build_subsets(cfg.datatype, roots, cfg.corruptions, cfg.severities, cfg.allow_missing, cfg.subset)
    )
    check_num_classes(subsets, head_num_classes(mm_cfg))
    models, loaded = load_models(cfg, mm_cfg, info.device)
    for model in loaded:
        check_num_classes(subsets, num_classes_of(model))
    dataset = PairedImages(subsets, build_pipeline(mm_cfg), cfg.views)
    indices = shard_batches(len(dataset), cfg.batch_size, info.rank, info.world_size)  # same batches for any world
    normalizer = Normalizer.from_config(mm_cfg)
    t0 = time.time()
    parts = all_gather_object(run_scoring(dataset, indices, models, normalizer, info.device, cfg))
    tta_parts = all_gather_object(run_tta(cfg, dataset, source_model(models), normalizer, info))
    if info.rank != 0:
        return None
    merged = {**merge_parts(parts, len(dataset)), **merge_tta(tta_parts, cfg.tta.methods, len(dataset))}
    summary = tables.summarize(subsets, dataset, merged, cfg.columns)
    notes = tta_notes(cfg, source_model(models))
    table = tables.markdown_tables(summary, cfg.columns, cfg.single, cfg.datatype, notes)
    print(table, flush=True)
    record = {
        "datatype": cfg.datatype,
        "config": cfg.config,
        "checkpoint": cfg.checkpoint,
        "originckpt": cfg.originckpt,
        "single_model": cfg.single,
        "single_model_checkpoint": cfg.single_checkpoint,
        "modes": list(cfg.modes),
        "tta": list(cfg.tta.methods),
        "tta_settings": asdict(cfg.tta) if cfg.tta.methods else None,
        "seed": cfg.seed,
        "subset": cfg.subset.key(),
        "methods": {m: tables.method_label(m, cfg.single) for m in cfg.columns},
        "models_per_mode": mode_models(cfg.modes, cfg.single),
        "notes": notes,
        "data_prefix1": cfg.data_prefix1,
        "data_prefix2": cfg.data_prefix2 if cfg.with_projection else None,
        "severities": list(cfg.severities) if cfg.datatype == "C" else None,
        "world_size": info.world_size,
        "amp": bool(cfg.amp),
        "images": len(dataset),
        "seconds": round(time.time() - t0, 2),
        **summary,
    }
    if cfg.out:
        write_outputs(Path(cfg.out), record, table, tables.csv_rows(summary, cfg.columns, cfg.single, cfg.datatype))
    return record


def source_model(models: EvalModels) -> nn.Module:
    """The model the adaptation baselines start from: the original (source) model."""
    return models.original if models.original is not None else models.single


def tta_notes(cfg: EvalConfig, source: nn.Module) -> dict[str, str]:
    """What a reader of the table must know about the adaptation columns."""
    notes = {}
    if "norm" in cfg.tta.methods and not has_batchnorm(source):
        notes["norm"] = "the model has no BatchNorm (LayerNorm only): test-time BN changes nothing, = Source"
    if "tent" in cfg.tta.methods:
        notes["tent"] = (
            f"online over each corruption/severity in a seeded order (seed {cfg.seed}), batches of "
            f"{cfg.tta.tta_batch_size}, reset between them"
        )
    return notes


def run_tta(cfg: EvalConfig, dataset: PairedImages, source: nn.Module, normalizer: Normalizer, info: DistInfo) -> dict:
    """The adaptation baselines on this rank's subsets (whole subsets: each is one stream):
    {(method, dataset index): (prediction, rank of the label)}."""
    if not cfg.tta.methods:
        return {}
    starts = np.cumsum([0] + [len(s.rels) for s in dataset.subsets])
    mine = shard(range(len(dataset.subsets)), info.rank, info.world_size)
    if info.rank == 0:
        log(f"adaptation baselines, cost: {cost_estimate(cfg.tta, len(dataset))}")

    def to_input(images: Tensor) -> Tensor:
        return normalizer(images.to(info.device))  # (B, 3, H, W)

    out = {}
    total = len(cfg.tta.methods) * sum(len(dataset.subsets[si].rels) for si in mine)
    with progress(total=total, desc="eval: " + ",".join(cfg.tta.methods)) as bar:
        for method in cfg.tta.methods:
            for si in mine:
                s, start = dataset.subsets[si], int(starts[si])
                load = partial(_load_raw, dataset, start)
                logits = adapt_subset(method, source, load, to_input, len(s.rels), cfg.tta, (cfg.seed, s.key))
                labels = torch.from_numpy(dataset.labels[start : start + len(s.rels)])
                for j, (p, r) in enumerate(zip(*predictions(logits, labels), strict=True)):
                    out[(method, start + j)] = (int(p), int(r))
                bar.update(len(s.rels))
    return out


def _load_raw(dataset: PairedImages, start: int, local: Sequence[int]) -> Tensor:
    """The raw uint8 images (B, 3, H, W) of a subset's items ``local`` (indices within the subset)."""
    images = []
    for j in local:
        _, views, err = dataset[start + j]
        if err:
            raise UserError(err)
        images.append(views["raw"])
    return torch.stack(images)


def merge_tta(parts: Sequence[dict], methods: Sequence[str], total: int) -> dict[str, np.ndarray]:
    """The ranks' adaptation results as the table's arrays "pred/<method>", "rank/<method>" in dataset order."""
    merged = {k: v for p in parts for k, v in p.items()}
    out = {}
    for m in methods:
        if sorted(i for (mm, i) in merged if mm == m) != list(range(total)):
            raise RuntimeError(f"{m}: the ranks' results do not cover every image exactly once")
        out[f"pred/{m}"] = np.array([merged[(m, i)][0] for i in range(total)], dtype=np.int32)
        out[f"rank/{m}"] = np.array([merged[(m, i)][1] for i in range(total)], dtype=np.uint8)
    return out


OUT_SUFFIXES = (".json", ".md", ".csv")  # what write_outputs writes for --out X.json


def write_outputs(out: Path, record: dict[str, Any], table: str, csv_text: str) -> None:
    """``X.json`` and, beside it, ``X.md`` (the tables) and ``X.csv``."""
    write_json(out, record)
    write_text(out.with_suffix(".md"), table)
    write_text(out.with_suffix(".csv"), csv_text)
    print(f"results: {out}, {out.with_suffix('.md')}, {out.with_suffix('.csv')}", flush=True)
