"""The mini benchmark: the whole SDA method end to end on a CPU, through the stage entry points.

    data -> gen (class-conditional ADM) -> align (DDA projection of the synthetic set and of every
    target corruption) -> finetune (MMPreTrain) -> eval (one pass, all ensembles)

Every stage runs as the same command a user runs at full scale (``gen/sample.py``,
``align/project.py``, ``finetune/train.py``, ``eval/test_ensemble.py``), with the small configs of
``configs/mini`` and the bundled source models of ``assets/mini`` (or retrained ones).

Honesty rules built in: the data split, the source models and every setting below were chosen on
the validation split; the one choice the demo makes itself (which confidence/entropy ensemble to
report) is made on the corrupted *validation* set, then applied to the test set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sda.mini.report import aggregate, bar_chart, image_grid, markdown_table
from sda.utils.errors import UserError
from sda.utils.io import list_images, write_json, write_text

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER_CONFIG = "configs/finetune/TinyResNet.py"  # the source classifier's architecture and test pipeline
ADM_CONFIGS = {"uncond": "configs/mini/adm_uncond.json", "cond": "configs/mini/adm_cond.json"}
# The label-free ensembles of the reference; the best on validation is reported as a control.
CONTROL_MODES = ("entropy", "confidence", "var", "entropy_sum", "confidence_sum")
TABLE_MODES = ("first", "second", "sum", "sda")
COLUMN_OF_MODE = {"first": "source", "second": "projected", "sum": "dda", "sda": "sda"}
MODEL_FLAG_KEYS = (
    "image_size",
    "num_channels",
    "num_res_blocks",
    "channel_mult",
    "learn_sigma",
    "class_cond",
    "attention_resolutions",
    "num_heads",
    "num_head_channels",
    "num_heads_upsample",
    "use_scale_shift_norm",
    "dropout",
    "resblock_updown",
    "use_fp16",
    "use_new_attention_order",
    "diffusion_steps",
    "noise_schedule",
    "predict_xstart",
    "predict_v",
)


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


def adm_model_flags(which: str) -> dict[str, Any]:
    """The model and diffusion flags of a mini ADM config ("cond" or "uncond"), without its training settings."""
    cfg = json.loads((ROOT / ADM_CONFIGS[which]).read_text())
    return {k: cfg[k] for k in MODEL_FLAG_KEYS if k in cfg}


def adm_flags(which: str) -> list[str]:
    """guided-diffusion style flags (``--num_channels 32 ...``) of a mini ADM config."""
    return [a for k, v in adm_model_flags(which).items() for a in (f"--{k}", str(v))]


def stratified_subset(src: Path, dst: Path, per_class: int) -> Path:
    """Link (or copy) the first ``per_class`` sorted files of each class folder of ``src`` into ``dst``."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        for rel in list_images(cls)[:per_class]:
            target = dst / cls.name / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cls / rel, target)
    return dst


class Runner:
    """Runs stage commands (alone, or several side by side), logs their stdout, keeps wall time per stage."""

    def __init__(self, log_dir: Path, threads: int):
        self.log_dir, self.threads, self.seconds = log_dir, threads, {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def _start(self, name: str, args: list[str], threads: int) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / f"{name}.log"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
        f = open(log, "a")
        f.write("$ python " + " ".join(args) + "\n")
        f.flush()
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=f, stderr=subprocess.PIPE, text=True)
        f.close()
        return proc, log

    @staticmethod
    def _check(name: str, proc: subprocess.Popen, log: Path) -> None:
        err = proc.communicate()[1] or ""
        if proc.returncode != 0:
            tail = err.strip().splitlines()[-3:]
            raise UserError(f"stage {name} failed (exit {proc.returncode}): {' / '.join(tail)}; see {log}")

    def __call__(self, stage: str, name: str, args: list[str]) -> None:
        self.parallel(stage, [(name, args)])

    def parallel(self, stage: str, jobs: list[tuple[str, list[str]]]) -> None:
        """Run ``jobs`` (largest first) on ``threads`` one-thread workers; one job gets all threads."""
        t0 = time.time()
        slots = max(1, min(self.threads, len(jobs)))
        per_job = max(1, self.threads // slots)
        print(f"[{stage}] {', '.join(n for n, _ in jobs)} ({slots} at a time; logs: {self.log_dir})", flush=True)
        pending, running = list(jobs), []
        try:
            while pending or running:
                while pending and len(running) < slots:
                    name, args = pending.pop(0)
                    running.append((name, *self._start(name, args, per_job)))
                done = [r for r in running if r[1].poll() is not None]
                for name, proc, log in done:
                    running.remove((name, proc, log))
                    self._check(name, proc, log)
                if not done:
                    time.sleep(0.5)
        finally:
            for _, proc, _ in running:
                proc.terminate()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.time() - t0


def prepare_data(data: Path, s: Settings, run: Runner) -> dict[str, Path]:
    """Clean splits (fixed split seed 0, as the bundled sources were trained on), stratified subsets of
    val and test, and their 15-corruption "-C" sets built with the ImageNet-C builder (cifar profile)."""
    if not (data / "split.json").is_file():
        run("data", "prepare_data", ["mini/prepare_data.py", "--out", str(data), "--seed", "0", "--no-corrupt"])
    out = {}
    for split, per_class in (("val", s.val_per_class), ("test", s.test_per_class)):
        sub = stratified_subset(data / split, data / f"{split}{per_class}", per_class)
        c_root = data / f"{split}{per_class}-C"
        run(
            "data",
            f"build_c_{split}",
            [
                "eval/build_c.py",
                str(sub),
                str(c_root),
                "--profile",
                "cifar",
                "--format",
                "png",
                "--severity",
                str(s.severity),
                "--seed",
                "0",
            ],
        )
        out[split], out[f"{split}-C"] = sub, c_root
    return out


def align_cmd(
    s: Settings,
    assets: Path,
    base: Path,
    datatype: str,
    save_dir: Path,
    seed: int,
    corruptions: tuple[str, ...] | None = None,
) -> list[str]:
    cmd = [
        "align/project.py",
        *adm_flags("uncond"),
        "--model_path",
        str(assets / "adm_uncond.pt"),
        "--base_samples",
        str(base),
        "--datatype",
        datatype,
        "--save_dir",
        str(save_dir),
        "--timestep_respacing",
        str(s.respacing),
        "--N",
        str(s.N),
        "--D",
        str(s.D),
        "--scale",
        str(s.scale),
        "--guidance-norm",
        s.guidance_norm,
        "--batch_size",
        str(s.align_batch),
        "--seed",
        str(seed),
        "--lossless",
        "--device",
        "cpu",
    ]
    if datatype == "C":
        cmd += ["--corruption", ",".join(corruptions) if corruptions else "all", "--severity", str(s.severity)]
    return cmd


def eval_cmd(raw: Path, proj: Path, ft: Path, origin: Path, modes: list[str], out: Path) -> list[str]:
    return [
        "eval/test_ensemble.py",
        CLASSIFIER_CONFIG,
        str(ft),
        "--originckpt",
        str(origin),
        "--metrics",
        "accuracy",
        "--datatype",
        "C",
        "--ensemble",
        ",".join(modes),
        "--corruption",
        "all",
        "--severity",
        "5",
        "--data_prefix1",
        str(raw),
        "--data_prefix2",
        str(proj),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--num-workers",
        "0",
    ]


def top1_table(record: dict, mode: str) -> dict[str, float]:
    """{corruption: top-1 %, ..., "mean": top-1 %} of one mode from an eval JSON."""
    cells = {e["corruption"]: e["top1"][mode] for e in record["results"].values()}
    cells["mean"] = sum(cells.values()) / len(cells)
    return cells


def classify_folder(assets: Path, root: Path) -> dict[str, Any]:
    """Top-1 (%) of the source classifier on a class-folder set, overall and per class."""
    import numpy as np
    import torch
    from PIL import Image

    from sda.classifiers import build_classifier_from_config, classifier_logits

    model = build_classifier_from_config(str(ROOT / CLASSIFIER_CONFIG), assets / "classifier.pth")
    files = list_images(root)
    labels = np.array([int(Path(f).parts[0]) for f in files])
    x = np.stack([np.asarray(Image.open(root / f).convert("RGB")) for f in files])  # (N, H, W, 3)
    with torch.no_grad():
        pred = classifier_logits(model, torch.from_numpy(x).permute(0, 3, 1, 2)).argmax(1).numpy()  # (N,)
    correct = pred == labels
    per_class = {int(c): 100.0 * float(correct[labels == c].mean()) for c in np.unique(labels)}
    return {"top1": 100.0 * float(correct.mean()), "per_class": per_class, "n": int(len(files))}


def run_key(seed: int, s: Settings, assets: Path) -> dict[str, Any]:
    """What a seed folder's outputs depend on: the seed, the settings, the source models and their configs."""
    from sda.utils.checkpoint import file_sha256

    files = [assets / n for n in ("adm_uncond.pt", "adm_cond.pt", "classifier.pth")]
    files += [ROOT / c for c in (*ADM_CONFIGS.values(), CLASSIFIER_CONFIG)]
    return {"seed": seed, "settings": asdict(s), "sha256": {f.name: file_sha256(f) for f in files}}


def claim_folder(out: Path, key: dict[str, Any]) -> None:
    """Resume only outputs made from the same inputs: a seed folder made otherwise is refused, not mixed."""
    path = out / "run_key.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != key:
            changed = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            if "sha256" in changed:
                changed += sorted(n for n in key["sha256"] if old.get("sha256", {}).get(n) != key["sha256"][n])
            raise UserError(
                f"{out} holds a run made with other inputs ({', '.join(changed)} changed); "
                f"delete it or choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, key)


def run_seed(seed: int, s: Settings, out: Path, data: Path, assets: Path, threads: int) -> dict:
    """One full run; returns the results.json record of this seed."""
    t_start = time.time()
    claim_folder(out, run_key(seed, s, assets))
    run = Runner(out / "logs", threads)
    sets = prepare_data(data, s, run)

    # Stage 1: gen (class-conditional ADM, pixel space)
    gen_dir = out / "gen"
    cond = json.loads((ROOT / ADM_CONFIGS["cond"]).read_text())
    run(
        "gen",
        "gen",
        [
            "gen/sample.py",
            "--model",
            "ADM",
            *adm_flags("cond"),
            "--ckpt",
            str(assets / "adm_cond.pt"),
            "--image-size",
            str(cond["image_size"]),
            "--num-classes",
            str(cond["num_classes"]),
            "--num-sampling-steps",
            str(s.sampling_steps),
            "--images-per-class",
            str(s.images_per_class),
            "--global-seed",
            str(seed),
            "--out-dir",
            str(gen_dir),
            "--per-proc-batch-size",
            "100",
            "--device",
            "cpu",
        ],
    )

    # Stage 2: align: the synthetic set (MoD), the target test set and the validation set, all corruptions.
    # Independent sets run side by side (the test corruptions in two halves).
    from sda.corruptions import CORRUPTIONS

    half = (len(CORRUPTIONS) + 1) // 2
    test_a = align_cmd(s, assets, sets["test-C"], "C", out / "test", seed, CORRUPTIONS[:half])
    test_b = align_cmd(s, assets, sets["test-C"], "C", out / "test", seed, CORRUPTIONS[half:])
    run.parallel(
        "align",
        [
            ("align_test_a", test_a),
            ("align_test_b", test_b),
            ("align_val", align_cmd(s, assets, sets["val-C"], "C", out / "val", seed)),
            ("align_synthetic", align_cmd(s, assets, gen_dir, "D", out, seed)),
            ("align_val_clean", align_cmd(s, assets, sets["val"], "D", out / "val_clean", seed)),
        ],
    )

    # Stage 3: finetune the source classifier on the aligned synthetic set; BN-adapt control
    ft, bn = out / "finetuned.pth", out / "bn_adapt.pth"
    opts = [f"load_from={assets / 'classifier.pth'}", f"randomness.seed={seed}"]
    if s.finetune_epochs is not None:
        opts.append(f"train_cfg.max_epochs={s.finetune_epochs}")
    run(
        "finetune",
        "finetune",
        [
            "finetune/train.py",
            CLASSIFIER_CONFIG,
            "--data-root",
            str(out / "DiT-Syn"),
            "--work-dir",
            str(out / "finetune"),
            "--final-ckpt",
            str(ft),
            "--no-validate",
            "--cfg-options",
            *opts,
        ],
    )
    run(
        "finetune",
        "bn_adapt",
        [
            "finetune/bn_adapt.py",
            CLASSIFIER_CONFIG,
            str(assets / "classifier.pth"),
            "--data-root",
            str(out / "DiT-Syn"),
            "--out",
            str(bn),
        ],
    )

    # Stage 4: eval. Validation first: it picks the control ensemble; then the test set.
    origin = assets / "classifier.pth"
    modes = [*TABLE_MODES, *CONTROL_MODES]
    run(
        "eval",
        "eval_val",
        eval_cmd(sets["val-C"], out / "val" / "ImageNet-C-Syn", ft, origin, modes, out / "eval_val.json"),
    )
    run(
        "eval",
        "eval_test",
        eval_cmd(sets["test-C"], out / "test" / "ImageNet-C-Syn", ft, origin, modes, out / "eval_test.json"),
    )
    run(
        "eval",
        "eval_test_bn",
        eval_cmd(sets["test-C"], out / "test" / "ImageNet-C-Syn", bn, origin, ["sda"], out / "eval_test_bn_adapt.json"),
    )
    val = json.loads((out / "eval_val.json").read_text())
    test = json.loads((out / "eval_test.json").read_text())
    best = max(CONTROL_MODES, key=lambda m: top1_table(val, m)["mean"])
    methods = {COLUMN_OF_MODE[m]: top1_table(test, m) for m in TABLE_MODES}
    methods["best_ensemble"] = top1_table(test, best)
    methods["bn_adapt"] = top1_table(json.loads((out / "eval_test_bn_adapt.json").read_text()), "sda")

    # Quality gates, measured in this run: (a) the source classifier on raw synthetic samples;
    # (b) noise corruptions of val before/after projection; (c) projected clean val images.
    t0 = time.time()
    synthetic = classify_folder(assets, gen_dir)
    clean = classify_folder(assets, sets["val"])
    clean_proj = classify_folder(assets, out / "val_clean" / "DiT-Syn")
    noise = ("gaussian_noise", "shot_noise", "impulse_noise")
    val_src, val_proj = top1_table(val, "first"), top1_table(val, "second")
    gates = {
        "a_synthetic_per_class": synthetic["per_class"],
        "a_pass": min(synthetic["per_class"].values()) >= 90.0,
        "b_noise_val": {"source": sum(val_src[c] for c in noise) / 3, "projected": sum(val_proj[c] for c in noise) / 3},
        "c_clean_val": {"source": clean["top1"], "projected": clean_proj["top1"]},
    }
    gates["b_pass"] = gates["b_noise_val"]["projected"] > gates["b_noise_val"]["source"]
    run.seconds["gates"] = time.time() - t0

    record = {
        "benchmark": s.benchmark,
        "seed": seed,
        "methods": methods,
        "best_ensemble_mode": best,
        "best_ensemble_val_means": {m: top1_table(val, m)["mean"] for m in CONTROL_MODES},
        "n_per_corruption": 10 * s.test_per_class,
        "synthetic_accuracy": synthetic["top1"],
        "gates": gates,
        "settings": asdict(s),
        "stage_seconds": {k: round(v, 1) for k, v in run.seconds.items()},
        "seconds": round(time.time() - t_start, 1),
    }
    write_json(out / "results.json", record)
    figures(record, out, gen_dir, sets["test-C"], s)
    return record


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


def main_run(seeds: list[int], out: Path, data: Path, assets: Path, quick: bool, threads: int, retrain: bool) -> dict:
    s = QUICK if quick else Settings()
    if quick:
        s = replace(s, benchmark=s.benchmark + " [quick]")
    t0 = time.time()
    if retrain:
        subprocess.run(
            [sys.executable, "mini/train_sources.py", "--data", str(data), "--assets", str(assets)],
            cwd=ROOT,
            check=True,
        )
    for name in ("adm_uncond.pt", "adm_cond.pt", "classifier.pth"):
        if not (assets / name).is_file():
            raise UserError(
                f"source model {assets / name} is missing; restore assets/mini from git, or run with --retrain-sources"
            )
    records = [run_seed(seed, s, out / f"seed{seed}", data, assets, threads) for seed in seeds]
    if len(records) == 1:
        summary, spread = records[0], None
    else:
        summary, spread = aggregate(records)
        summary.update(
            std=spread,
            per_seed_means={r["seed"]: {k: v["mean"] for k, v in r["methods"].items()} for r in records},
            synthetic_accuracy_per_seed=[r["synthetic_accuracy"] for r in records],
        )
    summary = {**summary, "seconds": round(time.time() - t0, 1), "per_seed": [r["seed"] for r in records]}
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
