"""A mini benchmark seed's record: its tables from the eval JSONs, the premise gates, the settings as run, the run
key that guards its folder, and its figures. Reads outputs; runs no stage."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from sda.mini import gates as G
from sda.mini.benchmarks import CLASSIFIER_CONFIG, SOURCE_MODELS, Benchmark, Settings
from sda.mini.plan import C_SYN, COLUMNS, CONTROL_MODES, D_SYN, Seed, eval_job
from sda.mini.procs import StageLog
from sda.mini.report import bar_chart, image_grid, with_means
from sda.utils.checkpoint import file_sha256
from sda.utils.io import list_images, write_json
from sda.utils.layout import CORRUPTIONS
from sda.utils.runfolder import RunFolder

# Threads of each fine-tuning and eval job, whatever --threads is: a model trained (or adapted at test time) on
# another number of threads comes out different (float sums split otherwise, amplified over the steps), so
# pinning it keeps a seed's numbers the same on every machine; --threads sets how many jobs run side by side.
# gen and align write 8-bit images, which came out identical on 1, 2 and 8 threads, and keep the spare cores.
PINNED_THREADS = 1
T = TypeVar("T")
RUN_KEY = "run_key.json"
PIPELINE = "mini-3"  # the pipeline's version in seed folders' keys: bump it when a change alters their results


def top1_table(record: dict, mode: str, severity: int | str) -> dict[str, float]:
    """{corruption: top-1 %, ..., "mean", sub-means} of one mode at one severity from an eval JSON."""
    cells = {
        e["corruption"]: e["top1"][mode] for e in record["results"].values() if str(e["severity"]) == str(severity)
    }
    return with_means(cells)


def measure_gates(r: Seed, val_eval: dict) -> dict[str, Any]:
    """The premise gates (a)-(e) of this run, from its own outputs and validation data (see ``sda.mini.gates``)."""
    g, sev = r.bench.gates, r.s.severities[0]
    models = G.gate_models(CLASSIFIER_CONFIG, r.assets)
    projected_clean = r.out / "val_clean" / D_SYN
    gates = {
        "a": G.gate_a(G.classify_folder(models[0], r.out / "gen"), g),
        "b": G.gate_b(top1_table(val_eval, "first", sev), top1_table(val_eval, "second", sev)),
        **G.gates_c_d_e(models, r.sets["val_clean"], projected_clean, r.sets["val"], r.s.D, g),
        "thresholds": asdict(g),
        "n": {
            "a": r.s.images_per_class * 10,
            "b_per_corruption": r.s.val_per_class * 10,
            "c_d": r.s.val_clean_per_class * 10,
        },
    }
    gates["premise"] = G.premise(gates)
    return gates


def pinned_threads(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on :data:`PINNED_THREADS` torch threads (then the process's count again): the gates classify
    in this process, and a prediction near a tie can follow the thread count too."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(PINNED_THREADS)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def effective_settings(bench: Benchmark, s: Settings) -> dict[str, Any]:
    """The settings as run: ``finetune_epochs`` None means the recipe's own count, recorded as such."""
    out = asdict(s)
    out["finetune_config"] = bench.finetune_config
    if out["finetune_epochs"] is None:
        from mmengine.config import Config

        out["finetune_epochs"] = Config.fromfile(bench.finetune_config).train_cfg.max_epochs
    return out


def seed_record(r: Seed, stages: StageLog, evals: dict[str, dict]) -> dict:
    """The seed's results.json: every column per severity, the val-chosen control, the gates, times, settings."""
    val, test = evals["val"], evals["test"]
    main = r.s.severities[0]
    best = max(CONTROL_MODES, key=lambda m: top1_table(val, m, main)["mean"])
    tables = {}
    for sev in r.s.severities:
        cols = {}
        for k, (run, mode) in COLUMNS.items():
            record = evals.get(eval_job(run, sev))  # None: a column this seed's settings did not run
            if record is not None and _has(record, mode):
                cols[k] = top1_table(record, mode, sev)
        cols["best_ensemble"] = top1_table(test, best, sev)
        tables[str(sev)] = cols
    gates_file = r.out / "gates.json"
    stages.run("gates", gates_file.is_file, lambda: write_json(gates_file, pinned_threads(measure_gates, r, val)))
    gates = json.loads(gates_file.read_text())
    stage_seconds = stages.seconds()
    return {
        "benchmark": r.bench.name,
        "description": r.bench.description,
        "seed": r.seed,
        "methods": tables[str(main)],
        "tables": tables,
        "main_severity": main,
        "best_ensemble_mode": best,
        "best_ensemble_val_means": {m: top1_table(val, m, main)["mean"] for m in CONTROL_MODES},
        "n_per_corruption": 10 * r.s.test_per_class,
        "synthetic_accuracy": gates["a"]["top1"],
        "gates": gates,
        "settings": effective_settings(r.bench, r.s),
        "stage_seconds": stage_seconds,
        "resumed_stages": stages.resumed,
        "seconds": round(sum(stage_seconds.values()), 1),
    }


def _has(record: dict, mode: str) -> bool:
    first = next(iter(record["results"].values()))
    return mode in first["top1"]


def run_key(r: Seed) -> dict[str, Any]:
    """What a seed folder's outputs depend on: benchmark, seed, settings, source models and their configs."""
    sha = {r.bench.record_name(c): file_sha256(c) for c in r.bench.config_files()}
    sha.update({n: file_sha256(r.asset(n)) for n in SOURCE_MODELS})  # by name: --assets may point elsewhere
    key = {"pipeline": PIPELINE, "benchmark": r.bench.name, "seed": r.seed, "settings": asdict(r.s), "sha256": sha}
    return json.loads(json.dumps(key))  # as stored (tuples become lists), so a resume compares equal


def claim_folder(out: Path, key: dict[str, Any]) -> RunFolder:
    """Resume only outputs made from the same inputs: a seed folder made otherwise is refused, not mixed.
    Returns the claimed folder (release it when the seed is done)."""
    folder = RunFolder(out, key, RUN_KEY, section=None, fix="delete it or choose another --out")
    folder.claim()
    return folder


def figures(record: dict, r: Seed) -> None:
    """Bar chart and labelled grids: synthetic samples before/after MoD per class; raw vs projected targets."""
    out, gen_dir = r.out, r.out / "gen"
    bar_chart(
        record, out / "results.png", f"{record['description']}: severity {record['main_severity']}, seed {r.seed}"
    )
    k = min(4, r.s.images_per_class)
    rows, labels = [], []
    for cls in sorted(p.name for p in gen_dir.iterdir() if p.is_dir()):
        names = sorted(f.name for f in (gen_dir / cls).glob("*.png"))[:k]
        rows.append([gen_dir / cls / n for n in names] + [out / D_SYN / cls / n for n in names])
        labels.append(f"class {int(cls)}")
    image_grid(
        rows, out / "grid_synthetic.png", labels, [("raw generator samples", k), ("after MoD (DDA projection)", k)]
    )
    sev = str(r.s.severities[0])
    k = min(3, r.s.test_per_class * 10)
    rows, labels = [], []
    for corr in CORRUPTIONS:
        raw = r.sets["test-C"] / corr / sev
        files = list_images(raw)[:k]
        views = [raw, out / "test" / C_SYN / corr / sev, out / "diffpure" / C_SYN / corr / sev]
        rows.append([v / f for v in views for f in files])
        labels.append(corr)
    groups = [(f"raw target (severity {sev})", k), ("DDA projection", k), ("DiffPure (unguided)", k)]
    image_grid(rows, out / "grid_target.png", labels, groups)


def caption(record: dict, seeds: list[int]) -> str:
    n = record["n_per_corruption"]
    return (
        f"Mini benchmark `{record['description']}`: top-1 (%) on the target-test split, {n} images per corruption "
        f"and severity, seed(s) {','.join(map(str, seeds))}. Columns: Source = source model on raw images; "
        f"Projected only = source model on DDA projections; DDA = their softmax sum; DiffPure = source model on "
        f"DiffPure's purification (reverse VP-SDE from t* = 150 of 1000, no guidance, as DDA's author ran it); "
        f"SDA = source model on raw + fine-tuned model on projected (softmax sum); SDA w/o "
        f"MoD = the same with the model fine-tuned on the raw synthetic images; best ensemble chosen on validation "
        f"({record.get('best_ensemble_mode')}); BN-adapt = SDA with the fine-tuned model replaced by the source "
        f"model whose BatchNorm statistics were re-estimated on the aligned synthetic set; Test-time BN, TENT, MEMO "
        f"= the source model adapted on the raw target images (no labels; test-time BN and TENT in an online stream "
        f"of batches of {record.get('settings', {}).get('tta_batch', 64)}); Oracle = SDA with the model fine-tuned on "
        f"projected *real* labelled train images (an upper bound, not a method). Sub-means: recoverable = noise, "
        f"blur, elastic, pixelate, JPEG; low-frequency = snow, frost, fog, brightness, contrast."
    )
