"""A mini benchmark: the whole SDA method end to end on a CPU, through the stage entry points, with the
paper's ablation, its other columns and the standard controls beside it, and the premise gates.

    data -> gen (class-conditional ADM) -> align (DDA projection of the synthetic set (MoD), the target test
    set and the validation set; DiffPure's unguided projection of the test set) -> finetune (MMPreTrain: on
    the aligned synthetic set; on the raw one (SDA w/o MoD); BN-adapt) -> eval (one pass per model, every
    ensemble, DiffPure and the test-time adaptation controls) -> premise gates (a)-(e)

Every stage runs as the same command a user runs at full scale (``gen/sample.py``, ``align/project.py``,
``finetune/train.py``, ``eval/evaluate.py``), with the benchmark's configs (``configs/mini/<name>``) and
bundled source models (``assets/mini/<name>``, or retrained ones).

Honesty rules built in: the data, the source models and every setting were chosen on the validation split;
the one choice the demo makes itself (which confidence/entropy ensemble to report) is made on the corrupted
*validation* set, then applied to the test set; the gates read validation data only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from sda.mini import gates as G
from sda.mini.benchmarks import CLASSIFIER_CONFIG, DEFAULT_BENCHMARK, SOURCE_MODELS, Benchmark, Settings, get_benchmark
from sda.mini.data import stratified_subset
from sda.mini.procs import ROOT, StageLog, StageRunner, complete_manifest
from sda.mini.report import aggregate, bar_chart, image_grid, markdown_table, verdict, verdict_line, with_means
from sda.utils.checkpoint import file_sha256
from sda.utils.errors import UserError
from sda.utils.io import list_images, write_json, write_text
from sda.utils.layout import CORRUPTIONS
from sda.utils.runfolder import RunFolder

# The label-free ensembles of the reference; the best on validation is reported as a control.
CONTROL_MODES = ("entropy", "confidence", "var", "entropy_sum", "confidence_sum")
TABLE_MODES = ("first", "second", "sum", "sda")
# Each column of the table: (eval run, mode or adaptation method of that run's JSON).
COLUMNS: dict[str, tuple[str, str]] = {
    "source": ("test", "first"),
    "projected": ("test", "second"),
    "dda": ("test", "sum"),
    "diffpure": ("test", "diffpure"),
    "sda": ("test", "sda"),
    "sda_nomod": ("test_nomod", "sda"),
    "bn_adapt": ("test_bn_adapt", "sda"),
    "test_time_bn": ("test", "norm"),
    "tent": ("test", "tent"),
    "memo": ("test_memo", "memo"),
    "oracle": ("test_oracle", "sda"),
}
EVAL_RUNS = ("val", "test", "test_nomod", "test_bn_adapt", "test_oracle")
# MEMO (64 augmented views, a backward pass per image) costs about 50x the rest of eval together: it runs as
# one job per severity ("test_memo_5", ...), started first, so the workers share it instead of one of them
# idling; its column reads each severity from that severity's job.
MEMO_RUN = "test_memo"
# Threads of each fine-tuning and eval job, whatever --threads is: a model trained (or adapted at test time) on
# another number of threads comes out different (float sums split otherwise, amplified over the steps), so
# pinning it keeps a seed's numbers the same on every machine; --threads sets how many jobs run side by side.
# gen and align write 8-bit images, which came out identical on 1, 2 and 8 threads, and keep the spare cores.
PINNED_THREADS = 1
T = TypeVar("T")
RUN_KEY = "run_key.json"
PIPELINE = "mini-3"  # the pipeline's version in seed folders' keys: bump it when a change alters their results


def cli(*positional: str | Path, **flags: Any) -> list[str]:
    """A command line: positional arguments, then ``--name value`` for each flag (``True``: the bare flag).

    Flag names are written as the entry points spell them; ``_`` in a keyword stays ``_`` unless the
    keyword ends in ``_`` (``guidance_norm_="x"`` -> ``--guidance-norm x``).
    """
    out = [str(p) for p in positional]
    for name, value in flags.items():
        flag = "--" + (name[:-1].replace("_", "-") if name.endswith("_") else name)
        out += [flag] if value is True else [flag, str(value)]
    return out


def severities_arg(s: Settings) -> str:
    return ",".join(map(str, s.severities))


@dataclass(frozen=True)
class Seed:
    """One seed's run: the benchmark, its settings and where things live."""

    bench: Benchmark
    s: Settings
    seed: int
    out: Path  # the seed folder
    data: Path
    assets: Path

    def asset(self, name: str) -> Path:
        return self.assets / name

    @property
    def sets(self) -> dict[str, Path]:
        """The stratified subsets and their "-C" sets that :func:`prepare_data` makes."""
        s, d = self.s, self.data
        return {
            "val": d / "val",
            "val_clean": d / f"val{s.val_clean_per_class}",
            "val_sub": d / f"val{s.val_per_class}",
            "val-C": d / f"val{s.val_per_class}-C",
            "test": d / f"test{s.test_per_class}",
            "test-C": d / f"test{s.test_per_class}-C",
        }


# ---------------------------------------------------------------------------------------------
# stages


def ensure_data(bench: Benchmark, data: Path, run: StageRunner) -> None:
    """The benchmark's clean splits (split seed 0, as the bundled sources were trained on), made once."""
    if not (data / "split.json").is_file():
        run(
            "data",
            "prepare_data",
            cli("mini/prepare_data.py", benchmark=bench.name, out=data, seed=0, no_corrupt_=True),
        )


def prepare_data(r: Seed, run: StageRunner) -> None:
    """Clean splits, stratified subsets of val and test, and their 15-corruption "-C" sets built with the
    ImageNet-C builder (cifar profile): val at the main severity, test at every severity. Idempotent and cheap
    once made (the builder resumes)."""
    ensure_data(r.bench, r.data, run)
    sets, s = r.sets, r.s
    stratified_subset(sets["val"], sets["val_clean"], s.val_clean_per_class)
    stratified_subset(sets["val"], sets["val_sub"], s.val_per_class)
    stratified_subset(r.data / "test", sets["test"], s.test_per_class)
    for name, src, dst, sev in (
        ("build_c_val", sets["val_sub"], sets["val-C"], s.severities[0]),
        ("build_c_test", sets["test"], sets["test-C"], severities_arg(s)),
    ):
        run("data", name, cli("eval/build_c.py", src, dst, profile="cifar", format="png", severity=sev, seed=0))


def _gen(r: Seed, run: StageRunner) -> None:
    """Stage 1: the labelled synthetic set from the class-conditional ADM (pixel space)."""
    cond = r.bench.adm_config("cond")
    cmd = cli(
        "gen/sample.py",
        *cli(model="ADM"),
        *r.bench.adm_flags("cond"),
        ckpt=r.asset("adm_cond.pt"),
        image_size_=cond["image_size"],
        num_classes_=cond["num_classes"],
        num_sampling_steps_=r.s.sampling_steps,
        cfg_scale_=r.s.cfg_scale,
        images_per_class_=r.s.images_per_class,
        global_seed_=r.seed,
        out_dir_=r.out / "gen",
        per_proc_batch_size_=100,
        device="cpu",
    )
    run("gen", "gen", cmd)


def project_cmd(
    bench: Benchmark, s: Settings, projector: Path, base: Path, datatype: str, save_dir: Path, seed: int
) -> list[str]:
    """``align/project.py`` with a benchmark's projector flags and the DDA settings of ``s``."""
    return cli(
        "align/project.py",
        *bench.adm_flags("uncond"),
        model_path=projector,
        base_samples=base,
        datatype=datatype,
        save_dir=save_dir,
        timestep_respacing=s.respacing,
        N=s.N,
        D=s.D,
        scale=s.scale,
        guidance_norm_=s.guidance_norm,
        batch_size=s.align_batch,
        seed=seed,
        lossless=True,
        device="cpu",
    )


def align_cmd(
    r: Seed, base: Path, datatype: str, save_dir: Path, corruptions: tuple[str, ...] = (), severity: str = ""
) -> list[str]:
    """``align/project.py`` with the benchmark's projector and DDA settings (C: ``severity``, default all of the
    run's; ``corruptions``, default all 15)."""
    s = r.s
    cmd = project_cmd(r.bench, s, r.asset("adm_uncond.pt"), base, datatype, save_dir, r.seed)
    if datatype == "C":
        cmd += cli(corruption=",".join(corruptions) if corruptions else "all", severity=severity or severities_arg(s))
    return cmd


def diffpure_cmd(r: Seed) -> list[str]:
    """DiffPure's purification of the test set: the same projector, unguided (``--guidance none``)."""
    cmd = align_cmd(r, r.sets["test-C"], "C", r.out / "diffpure")
    i = cmd.index("--timestep_respacing")
    cmd[i + 1] = str(r.s.diffpure_respacing)
    cmd[cmd.index("--N") + 1] = str(r.s.diffpure_N)
    return cmd + cli(guidance="none")


def _align(r: Seed, run: StageRunner) -> None:
    """Stage 2: the synthetic set (MoD), the target test set (two halves), the validation sets, DiffPure."""
    half = (len(CORRUPTIONS) + 1) // 2
    sets, out = r.sets, r.out
    jobs = [
        ("align_test_a", align_cmd(r, sets["test-C"], "C", out / "test", CORRUPTIONS[:half])),
        ("align_test_b", align_cmd(r, sets["test-C"], "C", out / "test", CORRUPTIONS[half:])),
        ("diffpure_test", diffpure_cmd(r)),
        ("align_val", align_cmd(r, sets["val-C"], "C", out / "val", severity=str(r.s.severities[0]))),
        ("align_synthetic", align_cmd(r, out / "gen", "D", out)),
        ("align_val_clean", align_cmd(r, sets["val_clean"], "D", out / "val_clean")),
    ]
    run.parallel("align", jobs)


def _align_manifests(r: Seed) -> list[Path]:
    out = r.out
    test = [f"{c}/{v}/align_manifest.json" for c in CORRUPTIONS for v in r.s.severities]
    val = [f"{c}/{r.s.severities[0]}/align_manifest.json" for c in CORRUPTIONS]
    return [
        out / "DiT-Syn" / "align_manifest.json",
        out / "val_clean" / "DiT-Syn" / "align_manifest.json",
        *(out / "test" / "ImageNet-C-Syn" / c for c in test),
        *(out / "diffpure" / "ImageNet-C-Syn" / c for c in test),
        *(out / "val" / "ImageNet-C-Syn" / c for c in val),
    ]


def finetune_cmd(
    bench: Benchmark, s: Settings, source: Path, data_root: Path, work_dir: Path, final: Path, seed: int
) -> list[str]:
    """Fine-tune the source classifier on a class-folder set with the benchmark's recipe (``finetune_config``):
    SDA on the aligned synthetic set, its ablation on the raw one, the oracle on projected real images."""
    opts = [f"load_from={source}", f"randomness.seed={seed}"]
    if s.finetune_epochs is not None:
        opts.append(f"train_cfg.max_epochs={s.finetune_epochs}")
    cmd = cli("finetune/train.py", bench.finetune_config, data_root_=data_root, work_dir_=work_dir)
    return cmd + cli(final_ckpt_=final, no_validate_=True) + ["--cfg-options", *opts]


def _finetune(r: Seed, run: StageRunner) -> None:
    """Stage 3: SDA's fine-tuning on the aligned synthetic set; the ablation on the raw one; BN-adapt."""
    bn = cli(
        "finetune/bn_adapt.py",
        CLASSIFIER_CONFIG,
        r.asset("classifier.pth"),
        data_root_=r.out / "DiT-Syn",
        out=r.out / "bn_adapt.pth",
    )
    source, out = r.asset("classifier.pth"), r.out
    jobs = [
        (
            "finetune",
            finetune_cmd(r.bench, r.s, source, out / "DiT-Syn", out / "work_ft", out / "finetuned.pth", r.seed),
        ),
        (
            "finetune_nomod",
            finetune_cmd(r.bench, r.s, source, out / "gen", out / "work_nomod", out / "finetuned_nomod.pth", r.seed),
        ),
        ("bn_adapt", bn),
    ]
    run.parallel("finetune", jobs, threads_per_job=PINNED_THREADS)


def eval_job(run: str, severity: int) -> str:
    """The eval job holding ``run``'s column at ``severity``: MEMO's has one job per severity."""
    return f"{MEMO_RUN}_{severity}" if run == MEMO_RUN else run


def eval_runs(s: Settings) -> tuple[str, ...]:
    """Every eval job of a seed, slowest first: MEMO's per-severity jobs (if it is a column), then EVAL_RUNS."""
    memo = tuple(eval_job(MEMO_RUN, sev) for sev in s.severities) if "memo" in s.tta else ()
    return (*memo, *EVAL_RUNS)


def eval_cmd(r: Seed, name: str) -> list[str]:
    """``eval/evaluate.py`` for one of :func:`eval_runs` (validation, the test set with one fine-tuned model, or
    MEMO at one severity)."""
    out, s = r.out, r.s
    model = {"test_nomod": "finetuned_nomod.pth", "test_bn_adapt": "bn_adapt.pth"}.get(name, "finetuned.pth")
    ckpt = r.asset("oracle.pth") if name == "test_oracle" else out / model
    common = dict(originckpt=r.asset("classifier.pth"), metrics="accuracy", datatype="C", corruption="all")
    tail = cli(out=out / f"eval_{name}.json", device="cpu", num_workers_=0, seed=r.seed)
    if name == "val":
        modes = [*TABLE_MODES, *CONTROL_MODES]
        paths = dict(data_prefix1=r.sets["val-C"], data_prefix2=out / "val" / "ImageNet-C-Syn")
        return (
            cli(
                "eval/evaluate.py",
                CLASSIFIER_CONFIG,
                ckpt,
                **common,
                ensemble=",".join(modes),
                severity=s.severities[0],
                **paths,
            )
            + tail
        )
    if name.startswith(f"{MEMO_RUN}_"):  # MEMO at one severity; "first" (the source) is there for the record
        flags = dict(severity=name.removeprefix(f"{MEMO_RUN}_"), ensemble="first", tta="memo", memo_views_=s.memo_views)
        return cli("eval/evaluate.py", CLASSIFIER_CONFIG, ckpt, **common, data_prefix1=r.sets["test-C"], **flags) + tail
    paths = dict(data_prefix1=r.sets["test-C"], data_prefix2=out / "test" / "ImageNet-C-Syn")
    cmd = cli("eval/evaluate.py", CLASSIFIER_CONFIG, ckpt, **common, severity=severities_arg(s), **paths) + tail
    if name != "test":
        return cmd + cli(ensemble="sda")
    modes = [*TABLE_MODES, *CONTROL_MODES, "diffpure"]
    cmd += cli(ensemble=",".join(modes), data_prefix_diffpure=out / "diffpure" / "ImageNet-C-Syn")
    tta = [m for m in s.tta if m != "memo"]
    return cmd + cli(tta=",".join(tta)) if tta else cmd


def _eval(r: Seed, run: StageRunner) -> None:
    """Stage 4: validation and the test set with every fine-tuned model (side by side)."""
    run.parallel("eval", [(f"eval_{n}", eval_cmd(r, n)) for n in eval_runs(r.s)], threads_per_job=PINNED_THREADS)


def top1_table(record: dict, mode: str, severity: int | str) -> dict[str, float]:
    """{corruption: top-1 %, ..., "mean", sub-means} of one mode at one severity from an eval JSON."""
    cells = {
        e["corruption"]: e["top1"][mode] for e in record["results"].values() if str(e["severity"]) == str(severity)
    }
    return with_means(cells)


# ---------------------------------------------------------------------------------------------
# gates, record, figures


def measure_gates(r: Seed, val_eval: dict) -> dict[str, Any]:
    """The premise gates (a)-(e) of this run, from its own outputs and validation data (see ``sda.mini.gates``)."""
    g, sev = r.bench.gates, r.s.severities[0]
    models = G.gate_models(ROOT / CLASSIFIER_CONFIG, r.assets)
    projected_clean = r.out / "val_clean" / "DiT-Syn"
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

        out["finetune_epochs"] = Config.fromfile(str(ROOT / bench.finetune_config)).train_cfg.max_epochs
    return out


def _record(r: Seed, stages: StageLog, evals: dict[str, dict]) -> dict:
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
    files = [r.asset(n) for n in SOURCE_MODELS] + [ROOT / c for c in r.bench.config_files()]
    sha = {str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else f.name: file_sha256(f) for f in files}
    key = {"pipeline": PIPELINE, "benchmark": r.bench.name, "seed": r.seed, "settings": asdict(r.s), "sha256": sha}
    return json.loads(json.dumps(key))  # as stored (tuples become lists), so a resume compares equal


def claim_folder(out: Path, key: dict[str, Any]) -> RunFolder:
    """Resume only outputs made from the same inputs: a seed folder made otherwise is refused, not mixed.
    Returns the claimed folder (release it when the seed is done)."""
    folder = RunFolder(out, key, RUN_KEY, section=None, fix="delete it or choose another --out")
    folder.claim()
    return folder


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
        stages.run("gen", lambda: complete_manifest(out / "gen" / "manifest.json"), lambda: _gen(r, run))
        stages.run("align", lambda: all(map(complete_manifest, _align_manifests(r))), lambda: _align(r, run))
        stages.run("finetune", lambda: all(p.is_file() for p in models), lambda: _finetune(r, run))
        stages.run("eval", lambda: all(p.is_file() for p in evals.values()), lambda: _eval(r, run))
        record = _record(r, stages, {n: json.loads(p.read_text()) for n, p in evals.items()})
    finally:
        folder.release()
    record["this_run_seconds"] = round(time.time() - t_start, 1)
    write_json(out / "results.json", record)
    figures(record, r)
    return record


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
        rows.append([gen_dir / cls / n for n in names] + [out / "DiT-Syn" / cls / n for n in names])
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
        views = [raw, out / "test" / "ImageNet-C-Syn" / corr / sev, out / "diffpure" / "ImageNet-C-Syn" / corr / sev]
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
        f"unguided projections; SDA = source model on raw + fine-tuned model on projected (softmax sum); SDA w/o "
        f"MoD = the same with the model fine-tuned on the raw synthetic images; best ensemble chosen on validation "
        f"({record.get('best_ensemble_mode')}); BN-adapt = SDA with the fine-tuned model replaced by the source "
        f"model whose BatchNorm statistics were re-estimated on the aligned synthetic set; Test-time BN, TENT, MEMO "
        f"= the source model adapted on the raw target images (no labels); Oracle = SDA with the model fine-tuned on "
        f"projected *real* labelled train images (an upper bound, not a method). Sub-means: recoverable = noise, "
        f"blur, elastic, pixelate, JPEG; low-frequency = snow, frost, fog, brightness, contrast."
    )


# ---------------------------------------------------------------------------------------------
# the demo


@dataclass(frozen=True)
class DemoRun:
    """What ``mini/demo.py`` runs: the benchmark, the seeds, where data, source models and results live."""

    benchmark: str = DEFAULT_BENCHMARK
    seeds: tuple[int, ...] = (0,)
    out: Path | None = None  # default results/mini/<benchmark>
    data: Path | None = None  # default data/mini/<benchmark>
    assets: Path | None = None  # default assets/mini/<benchmark>
    quick: bool = False
    threads: int = 2
    retrain_sources: bool = False


def _check_assets(assets: Path, bench: Benchmark) -> None:
    for name in SOURCE_MODELS:
        if not (assets / name).is_file():
            raise UserError(
                f"source model {assets / name} is missing; restore {bench.assets} from git, or run with "
                f"--retrain-sources"
            )


def main_run(run: DemoRun) -> dict:
    """Every seed, then the tables (mean ± std over seeds), gates, verdict, JSON, chart and grids in ``out``."""
    bench = get_benchmark(run.benchmark)
    out = run.out or Path("results/mini") / bench.name
    data, assets = run.data or bench.data, run.assets or bench.assets
    seeds = list(run.seeds)
    s = bench.quick if run.quick else bench.settings
    t0 = time.time()
    if run.retrain_sources:
        cmd = cli("mini/train_sources.py", benchmark=bench.name, data=data, assets=assets)
        subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
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
