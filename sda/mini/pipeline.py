"""The mini benchmark: the whole SDA method end to end on a CPU, through the stage entry points.

    data -> gen (class-conditional ADM) -> align (DDA projection of the synthetic set and of every
    target corruption) -> finetune (MMPreTrain) -> eval (one pass, all ensembles)

Every stage runs as the same command a user runs at full scale (``gen/sample.py``,
``align/project.py``, ``finetune/train.py``, ``eval/evaluate.py``), with the small configs of
``configs/mini`` and the bundled source models of ``assets/mini`` (or retrained ones).

Honesty rules built in: the data split, the source models and every setting below were chosen on
the validation split; the one choice the demo makes itself (which confidence/entropy ensemble to
report) is made on the corrupted *validation* set, then applied to the test set.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sda.mini.data import stratified_subset
from sda.mini.gates import classify_folder, load_source_classifier, mean_of
from sda.mini.procs import ROOT, StageLog, StageRunner, complete_manifest
from sda.mini.report import aggregate, bar_chart, image_grid, markdown_table
from sda.models.adm_flags import flags_of
from sda.utils.checkpoint import file_sha256
from sda.utils.errors import UserError
from sda.utils.io import list_images, write_json, write_text
from sda.utils.layout import CORRUPTIONS, NOISE_CORRUPTIONS
from sda.utils.runfolder import RunFolder

CLASSIFIER_CONFIG = "configs/finetune/TinyResNet.py"  # the source classifier's architecture and test pipeline
ADM_CONFIGS = {"uncond": "configs/mini/adm_uncond.json", "cond": "configs/mini/adm_cond.json"}
SOURCE_MODELS = ("adm_uncond.pt", "adm_cond.pt", "classifier.pth")  # in --assets
# The label-free ensembles of the reference; the best on validation is reported as a control.
CONTROL_MODES = ("entropy", "confidence", "var", "entropy_sum", "confidence_sum")
TABLE_MODES = ("first", "second", "sum", "sda")
COLUMN_OF_MODE = {"first": "source", "second": "projected", "sum": "dda", "sda": "sda"}
RUN_KEY = "run_key.json"
PIPELINE = "mini-2"  # the pipeline's version in seed folders' keys: bump it when a change alters their results


@dataclass(frozen=True)
class Settings:
    """The mini benchmark's settings (chosen on the validation split)."""

    images_per_class: int = 20  # synthetic set: 10 classes x 20
    sampling_steps: int = 50  # respaced DDPM steps of the generator
    respacing: int = 50  # projection: 50 respaced steps, noised to N = 25 (the paper's level, half the steps)
    N: int = 25
    D: int = 4
    scale: float = 6.0
    guidance_norm: str = "batch"  # the reference's batch-coupled norm ...
    align_batch: int = 10  # ... with the reference's batch size
    test_per_class: int = 10  # target-test subset: 100 images per corruption
    val_per_class: int = 5  # validation subset: 50 images per corruption
    severity: int = 5
    finetune_epochs: int | None = None  # None: the config's own
    benchmark: str = "digits-32px-C (sklearn digits, CIFAR-10-C severity profile)"


QUICK = Settings(
    images_per_class=3, sampling_steps=10, respacing=10, N=5, test_per_class=1, val_per_class=1, finetune_epochs=1
)


def adm_config(which: str) -> dict[str, Any]:
    """A mini ADM config file ("cond" or "uncond"): model and diffusion flags plus training settings."""
    return json.loads((ROOT / ADM_CONFIGS[which]).read_text())


def adm_model_flags(which: str) -> dict[str, Any]:
    """The model and diffusion flags of a mini ADM config, without its training settings."""
    return flags_of(adm_config(which))


def adm_flags(which: str) -> list[str]:
    """guided-diffusion style flags (``--num_channels 32 ...``) of a mini ADM config."""
    return [a for k, v in adm_model_flags(which).items() for a in (f"--{k}", str(v))]


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


def data_sets(data: Path, s: Settings) -> dict[str, Path]:
    """The stratified val / test subsets and their "-C" sets that ``prepare_data`` makes."""
    out = {}
    for split, per_class in (("val", s.val_per_class), ("test", s.test_per_class)):
        out[split], out[f"{split}-C"] = data / f"{split}{per_class}", data / f"{split}{per_class}-C"
    return out


def prepare_data(data: Path, s: Settings, run: StageRunner) -> dict[str, Path]:
    """Clean splits (fixed split seed 0, as the bundled sources were trained on), stratified subsets of
    val and test, and their 15-corruption "-C" sets built with the ImageNet-C builder (cifar profile).
    Idempotent and cheap once made (the builder resumes)."""
    if not (data / "split.json").is_file():
        run("data", "prepare_data", cli("mini/prepare_data.py", out=data, seed=0, no_corrupt_=True))
    sets = data_sets(data, s)
    for split, per_class in (("val", s.val_per_class), ("test", s.test_per_class)):
        stratified_subset(data / split, sets[split], per_class)
        cmd = cli(
            "eval/build_c.py",
            sets[split],
            sets[f"{split}-C"],
            profile="cifar",
            format="png",
            severity=s.severity,
            seed=0,
        )
        run("data", f"build_c_{split}", cmd)
    return sets


def align_cmd(
    s: Settings, assets: Path, base: Path, datatype: str, save_dir: Path, seed: int, corruptions: tuple[str, ...] = ()
) -> list[str]:
    cmd = cli(
        "align/project.py",
        *adm_flags("uncond"),
        model_path=assets / "adm_uncond.pt",
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
    if datatype == "C":
        cmd += cli(corruption=",".join(corruptions) if corruptions else "all", severity=s.severity)
    return cmd


def eval_cmd(raw: Path, proj: Path, ft: Path, origin: Path, modes: list[str], out: Path) -> list[str]:
    return cli(
        "eval/evaluate.py",
        CLASSIFIER_CONFIG,
        ft,
        originckpt=origin,
        metrics="accuracy",
        datatype="C",
        ensemble=",".join(modes),
        corruption="all",
        severity=5,
        data_prefix1=raw,
        data_prefix2=proj,
        out=out,
        device="cpu",
        num_workers_=0,
    )


def top1_table(record: dict, mode: str) -> dict[str, float]:
    """{corruption: top-1 %, ..., "mean": top-1 %} of one mode from an eval JSON."""
    cells = {e["corruption"]: e["top1"][mode] for e in record["results"].values()}
    cells["mean"] = sum(cells.values()) / len(cells)
    return cells


def run_key(seed: int, s: Settings, assets: Path) -> dict[str, Any]:
    """What a seed folder's outputs depend on: the seed, the settings, the source models and their configs."""
    files = [assets / n for n in SOURCE_MODELS]
    files += [ROOT / c for c in (*ADM_CONFIGS.values(), CLASSIFIER_CONFIG)]
    sha = {f.name: file_sha256(f) for f in files}
    return {"pipeline": PIPELINE, "seed": seed, "settings": asdict(s), "sha256": sha}


def claim_folder(out: Path, key: dict[str, Any]) -> RunFolder:
    """Resume only outputs made from the same inputs: a seed folder made otherwise is refused, not mixed.
    Returns the claimed folder (release it when the seed is done)."""
    folder = RunFolder(out, key, RUN_KEY, section=None, fix="delete it or choose another --out")
    folder.claim()
    return folder


def _gen(run: StageRunner, s: Settings, assets: Path, out: Path, seed: int) -> Path:
    """Stage 1: the labelled synthetic set from the class-conditional ADM (pixel space)."""
    gen_dir = out / "gen"
    cond = adm_config("cond")
    cmd = cli(
        "gen/sample.py",
        *cli(model="ADM"),
        *adm_flags("cond"),
        ckpt=assets / "adm_cond.pt",
        image_size_=cond["image_size"],
        num_classes_=cond["num_classes"],
        num_sampling_steps_=s.sampling_steps,
        images_per_class_=s.images_per_class,
        global_seed_=seed,
        out_dir_=gen_dir,
        per_proc_batch_size_=100,
        device="cpu",
    )
    run("gen", "gen", cmd)
    return gen_dir


def _align(run: StageRunner, s: Settings, assets: Path, out: Path, seed: int, sets: dict[str, Path]) -> None:
    """Stage 2: the synthetic set (MoD), the target test set and the validation set, all corruptions.

    Independent sets run side by side (the test corruptions in two halves).
    """
    half = (len(CORRUPTIONS) + 1) // 2
    jobs = [
        ("align_test_a", align_cmd(s, assets, sets["test-C"], "C", out / "test", seed, CORRUPTIONS[:half])),
        ("align_test_b", align_cmd(s, assets, sets["test-C"], "C", out / "test", seed, CORRUPTIONS[half:])),
        ("align_val", align_cmd(s, assets, sets["val-C"], "C", out / "val", seed)),
        ("align_synthetic", align_cmd(s, assets, out / "gen", "D", out, seed)),
        ("align_val_clean", align_cmd(s, assets, sets["val"], "D", out / "val_clean", seed)),
    ]
    run.parallel("align", jobs)


def _finetune(run: StageRunner, s: Settings, assets: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """Stage 3: fine-tune the source classifier on the aligned synthetic set; the BN-adapt control."""
    ft, bn = out / "finetuned.pth", out / "bn_adapt.pth"
    opts = [f"load_from={assets / 'classifier.pth'}", f"randomness.seed={seed}"]
    if s.finetune_epochs is not None:
        opts.append(f"train_cfg.max_epochs={s.finetune_epochs}")
    train = cli("finetune/train.py", CLASSIFIER_CONFIG, data_root_=out / "DiT-Syn", work_dir_=out / "finetune")
    train += cli(final_ckpt_=ft, no_validate_=True) + ["--cfg-options", *opts]
    run("finetune", "finetune", train)
    bn_cmd = cli(
        "finetune/bn_adapt.py", CLASSIFIER_CONFIG, assets / "classifier.pth", data_root_=out / "DiT-Syn", out=bn
    )
    run("finetune", "bn_adapt", bn_cmd)
    return ft, bn


def _eval(run: StageRunner, assets: Path, out: Path, sets: dict[str, Path], ft: Path, bn: Path) -> dict[str, dict]:
    """Stage 4: validation first (it picks the control ensemble), then the test set; the eval JSONs."""
    origin = assets / "classifier.pth"
    modes = [*TABLE_MODES, *CONTROL_MODES]
    test_proj = out / "test" / "ImageNet-C-Syn"
    runs = {
        "val": eval_cmd(sets["val-C"], out / "val" / "ImageNet-C-Syn", ft, origin, modes, out / "eval_val.json"),
        "test": eval_cmd(sets["test-C"], test_proj, ft, origin, modes, out / "eval_test.json"),
        "test_bn_adapt": eval_cmd(sets["test-C"], test_proj, bn, origin, ["sda"], out / "eval_test_bn_adapt.json"),
    }
    for name, cmd in runs.items():
        run("eval", f"eval_{name}", cmd)
    return {name: json.loads((out / f"eval_{name}.json").read_text()) for name in runs}


def _gates(assets: Path, out: Path, sets: dict[str, Path], val: dict) -> tuple[dict[str, Any], float]:
    """Quality gates, measured in this run: (a) the source classifier on raw synthetic samples; (b) noise
    corruptions of val before/after projection; (c) projected clean val images. Returns (gates, (a)'s top-1)."""
    model = load_source_classifier(ROOT / CLASSIFIER_CONFIG, assets / "classifier.pth")
    synthetic = classify_folder(model, out / "gen")
    clean = classify_folder(model, sets["val"])
    clean_proj = classify_folder(model, out / "val_clean" / "DiT-Syn")
    val_src, val_proj = top1_table(val, "first"), top1_table(val, "second")
    gates = {
        "a_synthetic_per_class": synthetic["per_class"],
        "a_pass": min(synthetic["per_class"].values()) >= 90.0,
        "b_noise_val": {
            "source": mean_of(val_src, NOISE_CORRUPTIONS),
            "projected": mean_of(val_proj, NOISE_CORRUPTIONS),
        },
        "c_clean_val": {"source": clean["top1"], "projected": clean_proj["top1"]},
    }
    gates["b_pass"] = gates["b_noise_val"]["projected"] > gates["b_noise_val"]["source"]
    return gates, synthetic["top1"]


def _align_manifests(out: Path, sets: dict[str, Path], s: Settings) -> list[Path]:
    corr = [f"{c}/{s.severity}/align_manifest.json" for c in CORRUPTIONS]
    return [
        out / "DiT-Syn" / "align_manifest.json",
        out / "val_clean" / "DiT-Syn" / "align_manifest.json",
        *(out / "test" / "ImageNet-C-Syn" / c for c in corr),
        *(out / "val" / "ImageNet-C-Syn" / c for c in corr),
    ]


def effective_settings(s: Settings) -> dict[str, Any]:
    """The settings as run: ``finetune_epochs`` None means the classifier config's own count, recorded as such."""
    out = asdict(s)
    if out["finetune_epochs"] is None:
        from mmengine.config import Config

        out["finetune_epochs"] = Config.fromfile(str(ROOT / CLASSIFIER_CONFIG)).train_cfg.max_epochs
    return out


def run_seed(seed: int, s: Settings, out: Path, data: Path, assets: Path, threads: int) -> dict:
    """One full run (stages whose outputs are complete from an earlier run are skipped); the results.json record."""
    t_start = time.time()
    folder = claim_folder(out, run_key(seed, s, assets))
    try:
        run, stages = StageRunner(out / "logs", threads), StageLog(out / "stages.json")
        sets = data_sets(data, s)
        if stages.run("data", lambda: True, lambda: prepare_data(data, s, run)) is None:
            prepare_data(data, s, run)  # the builders resume: cheap, and the first run's time is kept
        gen_dir, ft, bn = out / "gen", out / "finetuned.pth", out / "bn_adapt.pth"
        evals = {n: out / f"eval_{n}.json" for n in ("val", "test", "test_bn_adapt")}
        stages.run("gen", lambda: complete_manifest(gen_dir / "manifest.json"), lambda: _gen(run, s, assets, out, seed))
        stages.run(
            "align",
            lambda: all(map(complete_manifest, _align_manifests(out, sets, s))),
            lambda: _align(run, s, assets, out, seed, sets),
        )
        stages.run("finetune", lambda: ft.is_file() and bn.is_file(), lambda: _finetune(run, s, assets, out, seed))
        stages.run(
            "eval", lambda: all(p.is_file() for p in evals.values()), lambda: _eval(run, assets, out, sets, ft, bn)
        )
        record = _record(seed, s, out, assets, sets, stages, {n: json.loads(p.read_text()) for n, p in evals.items()})
    finally:
        folder.release()
    record["this_run_seconds"] = round(time.time() - t_start, 1)
    write_json(out / "results.json", record)
    figures(record, out, gen_dir, sets["test-C"], s)
    return record


def _record(
    seed: int, s: Settings, out: Path, assets: Path, sets: dict[str, Path], stages: StageLog, evals: dict
) -> dict:
    """The seed's results.json: the table's columns, the val-chosen control, the gates, times and settings."""
    val, test = evals["val"], evals["test"]
    best = max(CONTROL_MODES, key=lambda m: top1_table(val, m)["mean"])
    methods = {COLUMN_OF_MODE[m]: top1_table(test, m) for m in TABLE_MODES}
    methods["best_ensemble"] = top1_table(test, best)
    methods["bn_adapt"] = top1_table(evals["test_bn_adapt"], "sda")
    gates_file = out / "gates.json"
    stages.run("gates", gates_file.is_file, lambda: write_json(gates_file, _gates(assets, out, sets, val)))
    gates, synthetic = json.loads(gates_file.read_text())
    stage_seconds = stages.seconds()
    return {
        "benchmark": s.benchmark,
        "seed": seed,
        "methods": methods,
        "best_ensemble_mode": best,
        "best_ensemble_val_means": {m: top1_table(val, m)["mean"] for m in CONTROL_MODES},
        "n_per_corruption": 10 * s.test_per_class,
        "synthetic_accuracy": synthetic,
        "gates": gates,
        "settings": effective_settings(s),
        "stage_seconds": stage_seconds,
        "resumed_stages": stages.resumed,
        "seconds": round(sum(stage_seconds.values()), 1),
    }


def figures(record: dict, out: Path, gen_dir: Path, test_c: Path, s: Settings) -> None:
    """Bar chart and grids: synthetic samples before/after MoD per class; raw vs projected targets."""
    bar_chart(record, out / "results.png", f"{record['benchmark']}, seed {record.get('seed')}")
    k = min(4, s.images_per_class)
    rows = []
    for cls in sorted(p.name for p in gen_dir.iterdir() if p.is_dir()):
        names = sorted(f.name for f in (gen_dir / cls).glob("*.png"))[:k]
        rows.append([gen_dir / cls / n for n in names] + [out / "DiT-Syn" / cls / n for n in names])
    image_grid(rows, out / "grid_synthetic.png")
    rows = []
    for corr in sorted(p.name for p in test_c.iterdir() if p.is_dir()):
        files = list_images(test_c / corr / str(s.severity))[:k]
        proj = out / "test" / "ImageNet-C-Syn" / corr / str(s.severity)
        rows.append([test_c / corr / str(s.severity) / f for f in files] + [proj / f for f in files])
    image_grid(rows, out / "grid_target.png")


def caption(record: dict, seeds: list[int]) -> str:
    st = record["stage_seconds"] if "stage_seconds" in record else {}
    n = record["n_per_corruption"]
    return (
        f"Mini benchmark `{record['benchmark']}`: top-1 (%) on the target-test split, severity 5, "
        f"{n} images per corruption, seed(s) {','.join(map(str, seeds))}. Columns: Source = source model on "
        f"raw images; Projected only = source model on DDA projections; DDA = their softmax sum; SDA = source "
        f"model on raw + fine-tuned model on projected; best ensemble chosen on validation "
        f"({record.get('best_ensemble_mode')}); BN-adapt = SDA with the fine-tuned model replaced by the source "
        f"model whose BatchNorm statistics were re-estimated on the aligned synthetic set (no labels)."
        + (f" Stage seconds (seed {record.get('seed')}): {st}." if st else "")
    )


@dataclass(frozen=True)
class DemoRun:
    """What ``mini/demo.py`` runs: the seeds, where data, source models and results live, how hard to try."""

    seeds: tuple[int, ...] = (0,)
    out: Path = Path("results/mini")
    data: Path = Path("data/mini")
    assets: Path = Path("assets/mini")
    quick: bool = False
    threads: int = 2
    retrain_sources: bool = False


def main_run(run: DemoRun) -> dict:
    """Every seed, then the table (mean ± std over seeds), JSON, chart and grids in ``run.out``."""
    seeds, out, data, assets = list(run.seeds), run.out, run.data, run.assets
    s = QUICK if run.quick else Settings()
    if run.quick:
        s = replace(s, benchmark=s.benchmark + " [quick]")
    t0 = time.time()
    if run.retrain_sources:
        subprocess.run([sys.executable, *cli("mini/train_sources.py", data=data, assets=assets)], cwd=ROOT, check=True)
    for name in SOURCE_MODELS:
        if not (assets / name).is_file():
            raise UserError(
                f"source model {assets / name} is missing; restore assets/mini from git, or run with --retrain-sources"
            )
    records = [run_seed(seed, s, out / f"seed{seed}", data, assets, run.threads) for seed in seeds]
    if len(records) == 1:
        summary, spread = records[0], None
    else:
        summary, spread = aggregate(records)
        summary.update(
            std=spread,
            per_seed_means={r["seed"]: {k: v["mean"] for k, v in r["methods"].items()} for r in records},
            synthetic_accuracy_per_seed=[r["synthetic_accuracy"] for r in records],
        )
    summary = {
        **summary,
        "seconds": round(sum(r["seconds"] for r in records), 1),  # the cost of the results (first runs)
        "this_run_seconds": round(time.time() - t0, 1),
        "per_seed": [r["seed"] for r in records],
    }
    table = markdown_table(summary, spread)
    text = caption(records[0], seeds) + "\n\n" + table + "\n"
    write_json(out / "results.json", summary)
    write_text(out / "results.md", text)
    bar_chart(summary, out / "results.png", f"{summary['benchmark']}, seeds {seeds}")
    for name in ("grid_synthetic.png", "grid_target.png"):
        shutil.copyfile(out / f"seed{seeds[0]}" / name, out / name)
    print("\n" + text)
    g = records[0]["gates"]
    print(
        f"quality gates (seed {seeds[0]}): (a) source classifier on raw synthetic samples "
        f"{records[0]['synthetic_accuracy']:.1f}% (min class {min(g['a_synthetic_per_class'].values()):.0f}%, "
        f"{'PASS' if g['a_pass'] else 'FAIL'} >= 90%); (b) noisy val {g['b_noise_val']['source']:.1f}% -> "
        f"projected {g['b_noise_val']['projected']:.1f}% ({'PASS' if g['b_pass'] else 'FAIL'}); "
        f"(c) clean val {g['c_clean_val']['source']:.1f}% -> projected {g['c_clean_val']['projected']:.1f}%"
    )
    for r in records:
        print(
            f"time (seed {r['seed']}): "
            + ", ".join(f"{k} {v:.0f}s" for k, v in r["stage_seconds"].items())
            + f"; total {r['seconds']:.0f}s"
        )
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}, grids in {out}")
    return summary
