"""Stage 4 (eval) runner: load the models once, score every subset in one pass, gather exactly, report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sda.eval import tables
from sda.eval.config import EvalConfig
from sda.eval.pairs import PairedImages, build_subsets, check_num_classes
from sda.eval.scoring import EvalModels, merge_parts, mode_models, run_scoring
from sda.finetune.classifiers import (
    Normalizer,
    build_classifier_from_config,
    build_pipeline,
    head_num_classes,
    load_config,
    num_classes_of,
)
from sda.utils.dist import DistInfo, all_gather_object, cleanup, init_distributed, rank0_plan, shard_batches
from sda.utils.errors import UserError
from sda.utils.io import check_writable_file, write_json, write_text


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
        return loaded[path]

    others = [m for m in cfg.modes if m != "sda"]
    models = EvalModels(single=get(cfg.single_checkpoint) if others else None)
    if "sda" in cfg.modes:
        models.original, models.finetuned = get(cfg.originckpt), get(cfg.checkpoint)
    return models, list(loaded.values())


def evaluate(cfg: EvalConfig) -> dict[str, Any] | None:
    """Score the raw (and projected) target sets with every mode; the record on rank 0, None elsewhere."""
    if cfg.out:  # before the scoring pass, not after it
        check_writable_file(cfg.out, "--out")
    mm_cfg = load_config(cfg.config, cfg.cfg_options)
    info = setup_device(cfg)
    try:
        return _evaluate(cfg, mm_cfg, info)
    finally:
        cleanup()


def _evaluate(cfg: EvalConfig, mm_cfg: Any, info: DistInfo) -> dict[str, Any] | None:
    proj_root = cfg.data_prefix2 if cfg.with_projection else None
    subsets = rank0_plan(  # every rank scores the same pairs, listed once
        lambda: build_subsets(
            cfg.datatype, cfg.data_prefix1, proj_root, cfg.corruptions, cfg.severities, cfg.allow_missing
        )
    )
    check_num_classes(subsets, head_num_classes(mm_cfg))
    models, loaded = load_models(cfg, mm_cfg, info.device)
    for model in loaded:
        check_num_classes(subsets, num_classes_of(model))
    dataset = PairedImages(subsets, build_pipeline(mm_cfg), cfg.with_projection)
    indices = shard_batches(len(dataset), cfg.batch_size, info.rank, info.world_size)  # same batches for any world
    t0 = time.time()
    part = run_scoring(dataset, indices, models, Normalizer.from_config(mm_cfg), info.device, cfg)
    parts = all_gather_object(part)
    if info.rank != 0:
        return None
    merged = merge_parts(parts, len(dataset))
    summary = tables.summarize(subsets, dataset, merged, cfg.modes)
    table = tables.markdown_tables(summary, cfg.modes, cfg.single, cfg.datatype)
    print(table, flush=True)
    record = {
        "datatype": cfg.datatype,
        "config": cfg.config,
        "checkpoint": cfg.checkpoint,
        "originckpt": cfg.originckpt,
        "single_model": cfg.single,
        "single_model_checkpoint": cfg.single_checkpoint,
        "modes": list(cfg.modes),
        "methods": {m: tables.method_label(m, cfg.single) for m in cfg.modes},
        "models_per_mode": mode_models(cfg.modes, cfg.single),
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
        write_outputs(Path(cfg.out), record, table, tables.csv_rows(summary, cfg.modes, cfg.single, cfg.datatype))
    return record


def write_outputs(out: Path, record: dict[str, Any], table: str, csv_text: str) -> None:
    """``X.json`` and, beside it, ``X.md`` (the tables) and ``X.csv``."""
    write_json(out, record)
    write_text(out.with_suffix(".md"), table)
    write_text(out.with_suffix(".csv"), csv_text)
    print(f"results: {out}, {out.with_suffix('.md')}, {out.with_suffix('.csv')}", flush=True)
