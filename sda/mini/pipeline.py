"""A mini benchmark: the whole SDA method end to end on a CPU, through the stage entry points, with the
paper's ablation, its other columns and the standard controls beside it, and the premise gates.

    data -> gen (class-conditional ADM) -> align (DDA projection of the synthetic set (MoD), the target test
    set and the validation set; DiffPure's unguided projection of the test set) -> finetune (MMPreTrain: on
    the aligned synthetic set; on the raw one (SDA w/o MoD); BN-adapt) -> eval (one pass per model, every
    ensemble, DiffPure and the test-time adaptation controls) -> premise gates (a)-(e)

Every stage runs as the same command a user runs at full scale (``gen/sample.py``, ``align/project.py``,
``finetune/train.py``, ``eval/evaluate.py``), generated from the stage's typed config (``sda.mini.plan``), with
the benchmark's configs and bundled source models (or retrained ones). This module runs the plan;
``sda.mini.record`` records what it made.

Honesty rules built in: the data, the source models and every setting were chosen on the validation split;
the one choice the demo makes itself (which confidence/entropy ensemble to report) is made on the corrupted
*validation* set, then applied to the test set; the gates read validation data only.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sda.mini import gates as G
from sda.mini.benchmarks import DEFAULT_BENCHMARK, SOURCE_MODELS, Benchmark, check_run, get_benchmark
from sda.mini.commands import command
from sda.mini.data import stratified_subset
from sda.mini.plan import (
    Seed,
    align_jobs,
    align_manifests,
    data_jobs,
    eval_jobs,
    eval_runs,
    finetune_jobs,
    gen_job,
)
from sda.mini.procs import StageLog, StageRunner, complete_manifest
from sda.mini.record import PINNED_THREADS, caption, claim_folder, figures, run_key, seed_record
from sda.mini.report import aggregate, bar_chart, markdown_table, verdict, verdict_line
from sda.utils.errors import UserError
from sda.utils.io import write_json, write_text


def jobs(pairs: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
    """``(name, config)`` jobs as the runner's ``(name, arguments after python)``."""
    return [(name, command(cfg)) for name, cfg in pairs]


def ensure_data(bench: Benchmark, data: Path) -> None:
    """The benchmark's clean splits (split seed 0, as the bundled sources were trained on), made once."""
    if not (data / "split.json").is_file():  # mini/prepare_data.py --seed 0 --no-corrupt, in this process
        summary = bench.prepare(data, 0)
        print(f"[data] wrote {data}: " + ", ".join(f"{s} {n}" for s, n in summary["sizes"].items()), flush=True)


def prepare_data(r: Seed, run: StageRunner) -> None:
    """Clean splits, stratified subsets of val and test, and their 15-corruption "-C" sets built with the
    ImageNet-C builder (cifar profile). Idempotent and cheap once made (the builder resumes)."""
    ensure_data(r.bench, r.data)
    sets, s = r.sets, r.s
    stratified_subset(sets["val"], sets["val_clean"], s.val_clean_per_class)
    stratified_subset(sets["val"], sets["val_sub"], s.val_per_class)
    stratified_subset(r.data / "test", sets["test"], s.test_per_class)
    for name, argv in jobs(data_jobs(r)):
        run("data", name, argv)


def run_gen(r: Seed, run: StageRunner) -> None:
    run.parallel("gen", jobs([gen_job(r)]))


def run_align(r: Seed, run: StageRunner) -> None:
    run.parallel("align", jobs(align_jobs(r)))  # 8-bit outputs, the same on any thread count: spare cores used


def run_finetune(r: Seed, run: StageRunner) -> None:
    run.parallel("finetune", jobs(finetune_jobs(r)), threads_per_job=PINNED_THREADS)


def run_eval(r: Seed, run: StageRunner) -> None:
    run.parallel("eval", jobs(eval_jobs(r)), threads_per_job=PINNED_THREADS)


def run_seed(r: Seed, threads: int) -> dict:
    """One full run (stages whose outputs are complete from an earlier run are skipped); the results.json record."""
    t_start = time.time()
    folder = claim_folder(r.out, run_key(r))
    out = r.out
    try:
        run, stages = StageRunner(out / "logs", threads), StageLog(out / "stages.json")
        stages.run("data", lambda: True, lambda: prepare_data(r, run))
        if "data" in stages.resumed:
            prepare_data(r, run)  # the builders resume: cheap, and the first run's time is kept
        models = [out / n for n in ("finetuned.pth", "finetuned_nomod.pth", "bn_adapt.pth")]
        evals = {n: out / f"eval_{n}.json" for n in eval_runs(r.s)}
        stages.run("gen", lambda: complete_manifest(out / "gen" / "manifest.json"), lambda: run_gen(r, run))
        stages.run("align", lambda: all(map(complete_manifest, align_manifests(r))), lambda: run_align(r, run))
        stages.run("finetune", lambda: all(p.is_file() for p in models), lambda: run_finetune(r, run))
        stages.run("eval", lambda: all(p.is_file() for p in evals.values()), lambda: run_eval(r, run))
        record = seed_record(r, stages, {n: json.loads(p.read_text()) for n, p in evals.items()})
    finally:
        folder.release()
    record["this_run_seconds"] = round(time.time() - t_start, 1)
    write_json(out / "results.json", record)
    figures(record, r)
    return record


@dataclass(frozen=True)
class DemoRun:
    """What ``mini/demo.py`` runs: the benchmark, the seeds, where data, source models and results live."""

    benchmark: str = DEFAULT_BENCHMARK
    seeds: tuple[int, ...] = (0,)
    out: Path | None = None  # default results/mini/<benchmark>
    data: Path | None = None  # default data/mini/<benchmark>
    assets: Path | None = None  # default: the bundled models; with retrain_sources, assets/mini/<benchmark>
    quick: bool = False
    threads: int = 2
    retrain_sources: bool = False

    def __post_init__(self) -> None:
        written = {"out": self.out, "data": self.data}
        check_run(self.threads, {**written, **({"assets": self.source_models} if self.retrain_sources else {})})

    @property
    def source_models(self) -> Path:
        """The source models' folder: ``assets``, else the bundled one, or, when retraining them, the retrained
        one under the working folder (the bundled folder is never written)."""
        bench = get_benchmark(self.benchmark)
        return self.assets or (bench.retrained if self.retrain_sources else bench.assets)


def _check_assets(assets: Path, bench: Benchmark) -> None:
    for name in SOURCE_MODELS:
        if not (assets / name).is_file():
            raise UserError(
                f"source model {assets / name} is missing; give --assets a folder with the five models, restore "
                f"{bench.assets} from git, or run with --retrain-sources"
            )


def main_run(run: DemoRun) -> dict:
    """Every seed, then the tables (mean ± std over seeds), gates, verdict, JSON, chart and grids in ``out``."""
    bench = get_benchmark(run.benchmark)
    out = run.out or Path("results/mini") / bench.name
    data, assets = run.data or bench.data, run.source_models
    seeds = list(run.seeds)
    s = bench.quick if run.quick else bench.settings
    t0 = time.time()
    if run.retrain_sources:
        from sda.mini.sources import SourcesRun, retrain_sources

        retrain_sources(SourcesRun(bench.name, data=data, assets=assets, threads=run.threads))
    _check_assets(assets, bench)
    records = [run_seed(Seed(bench, s, seed, out / f"seed{seed}", data, assets), run.threads) for seed in seeds]
    summary, spread = aggregate(records)
    premise = all(r["gates"]["premise"] for r in records)
    v = verdict(records, premise)
    summary.update(
        quick=run.quick,
        std=spread,
        gates_per_seed={r["seed"]: r["gates"] for r in records},
        premise=premise,
        verdict=v,
        per_seed_means={r["seed"]: {k: c["mean"] for k, c in r["methods"].items()} for r in records},
        seconds=round(sum(r["seconds"] for r in records), 1),  # the cost of the results (first runs)
        this_run_seconds=round(time.time() - t0, 1),
        per_seed=[r["seed"] for r in records],
    )
    std = spread if len(records) > 1 else None
    text = caption(records[0], seeds) + "\n\n"
    for sev in summary["tables"]:
        text += f"Severity {sev}:\n\n" + markdown_table(summary, std, severity=sev) + "\n\n"
    gates_text = "\n".join(f"seed {r['seed']}:\n{G.gate_line(r['gates'])}" for r in records)
    text += "Premise gates (validation):\n\n```\n" + gates_text + "\n```\n\n" + verdict_line(v) + "\n"
    write_json(out / "results.json", summary)
    write_text(out / "results.md", text)
    bar_chart(summary, out / "results.png", f"{bench.description}: severity {s.severities[0]}, seeds {seeds}")
    for name in ("grid_synthetic.png", "grid_target.png"):
        shutil.copyfile(out / f"seed{seeds[0]}" / name, out / name)
    print("\n" + text)
    for r in records:
        print(
            f"time (seed {r['seed']}): "
            + ", ".join(f"{k} {v:.0f}s" for k, v in r["stage_seconds"].items())
            + f"; total {r['seconds']:.0f}s"
        )
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}, grids in {out}")
    return summary
