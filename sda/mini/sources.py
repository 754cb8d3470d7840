"""Train the mini benchmark's three source models from scratch, check their quality gates, write the manifest.

Everything is trained on the clean ``train`` split only, with the project's own entry points:

1. ``data/mini/{train,val,test}`` (digits, seed 0; ``sda.mini.data``);
2. ``align/train.py --config configs/mini/adm_uncond.json`` -> ``assets/mini/adm_uncond.pt`` and
   ``gen/train.py --model ADM --config configs/mini/adm_cond.json`` -> ``assets/mini/adm_cond.pt``
   (run side by side, one thread each; EMA weights as plain state dicts);
3. ``finetune/train.py configs/mini/classifier_scratch.py --data-root data/mini/train`` ->
   ``assets/mini/classifier.pth`` (mmpretrain format).

Quality gates, measured on the validation split only (the test split is never read here):
(a) the source classifier's accuracy on the generator's raw samples, per class (gate: >= 90% each);
(b) its accuracy on noise-corrupted val images (CIFAR-10-C severity 5) before and after DDA's
    projection with the unconditional model (gate: higher after);
(c) its accuracy on projected clean val images (recorded: the source/synthetic misalignment).
``assets/mini/MANIFEST.json`` records commands, seeds, split, versions, hashes, times and gates.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sda.mini.data import stratified_subset
from sda.mini.gates import classify_folder, load_source_classifier
from sda.mini.pipeline import ADM_CONFIGS, SOURCE_MODELS, adm_config, adm_flags, adm_model_flags, cli
from sda.mini.procs import ROOT, StageRunner
from sda.utils.checkpoint import file_sha256, safe_load
from sda.utils.layout import NOISE_CORRUPTIONS
from sda.utils.provenance import versions

CONFIGS = {f"adm_{k}": v for k, v in ADM_CONFIGS.items()}  # adm_uncond, adm_cond
CLASSIFIER_CONFIG = "configs/mini/classifier_scratch.py"
CLASSIFIER_EPOCHS = 50  # chosen on val: 15 epochs gave 92.8% clean val top-1, 50 epochs 99.2%
# Settings of the gates = the demo's sampling and projection settings (chosen on val).
GATE_SAMPLING_STEPS = 50
GATE_IMAGES_PER_CLASS = 50
PROJECTION = {"timestep_respacing": "50", "N": 25, "D": 4, "scale": 6.0, "guidance_norm": "batch", "batch_size": 10}
GATE_VAL_PER_CLASS = 1000  # val images per class projected for gates (b) and (c): all of them


def model_flags(name: str) -> dict[str, Any]:
    """The model (and diffusion) flags of a mini diffusion config, with its class count, without training settings."""
    cfg = adm_config(name.removeprefix("adm_"))
    extra = {"num_classes": cfg["num_classes"]} if "num_classes" in cfg else {}
    return {**adm_model_flags(name.removeprefix("adm_")), **extra}


# ---------------------------------------------------------------------------------------------
# training


def training_commands(data: Path, results: Path, assets: Path) -> dict[str, list[str]]:
    """The three training commands (arguments after ``python``)."""
    train = data / "train"
    return {
        "adm_uncond": cli(
            "align/train.py",
            config=CONFIGS["adm_uncond"],
            data_dir=train,
            results_dir=results / "adm_uncond",
            export=assets / "adm_uncond.pt",
        ),
        "adm_cond": cli(
            "gen/train.py",
            model="ADM",
            config=CONFIGS["adm_cond"],
            data_dir=train,
            results_dir=results / "adm_cond",
            export=assets / "adm_cond.pt",
        ),
        "classifier": cli(
            "finetune/train.py",
            CLASSIFIER_CONFIG,
            data_root_=train,
            work_dir_=results / "classifier" / "work",
            final_ckpt_=results / "classifier" / "classifier.pth",
            no_validate_=True,
        )
        + ["--cfg-options", f"train_cfg.max_epochs={CLASSIFIER_EPOCHS}"],
    }


def train_sources(data: Path, results: Path, assets: Path) -> dict[str, Any]:
    """The two diffusion models side by side (one thread each), then the classifier; returns commands and times."""
    cmds = training_commands(data, results, assets)
    run = StageRunner(results, threads=2)
    run.parallel("diffusion", [(k, cmds[k]) for k in ("adm_uncond", "adm_cond")])
    run.parallel("classifier", [("classifier", cmds["classifier"])])
    assets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results / "classifier" / "classifier.pth", assets / "classifier.pth")
    return {"commands": {k: " ".join(["python", *v]) for k, v in cmds.items()}, "seconds": run.job_seconds}


# ---------------------------------------------------------------------------------------------
# gates


def gate_synthetic(
    assets: Path, work: Path, classifier: torch.nn.Module, seed: int = 0, per_class: int = GATE_IMAGES_PER_CLASS
) -> dict[str, Any]:
    """(a): sample with gen/sample.py (its pixel-space default, clip_denoised on) and score the raw samples."""
    from sda.gen import GenConfig, generate

    flags = model_flags("adm_cond")
    out = work / "synthetic"
    argv = cli(
        model="ADM",
        ckpt=assets / "adm_cond.pt",
        image_size_=flags["image_size"],
        num_classes_=flags["num_classes"],
        num_sampling_steps_=GATE_SAMPLING_STEPS,
        images_per_class_=per_class,
        global_seed_=seed,
        out_dir_=out,
        per_proc_batch_size_=100,
        device="cpu",
        grid_size_=10,
    ) + adm_flags("cond")
    t0 = time.time()
    generate(GenConfig.from_argv(argv))
    res = classify_folder(classifier, out)
    res.update(
        {
            "seconds": round(time.time() - t0, 1),
            "sampling_steps": GATE_SAMPLING_STEPS,
            "images_per_class": per_class,
            "command": "python gen/sample.py " + " ".join(argv),
        }
    )
    res["pass"] = bool(min(res["per_class"].values()) >= 90.0)
    return res


def gate_projection(assets: Path, data: Path, work: Path, classifier: torch.nn.Module, seed: int = 0) -> dict:
    """(b) and (c): project a stratified val subset (noise-corrupted and clean) and score before/after."""
    from sda.align import AlignConfig, ProjectionConfig, project_folder
    from sda.align.runner import load_projector
    from sda.eval.builders import CorruptedSet, build_corrupted_set

    t0 = time.time()
    sub = stratified_subset(data / "val", work / "val_subset", GATE_VAL_PER_CLASS)
    noisy = CorruptedSet(sub, work / "val_subset-C", NOISE_CORRUPTIONS, (5,), profile="cifar", fmt="png", seed=seed)
    build_corrupted_set(noisy)
    flags = model_flags("adm_uncond")
    projection = ProjectionConfig(N=PROJECTION["N"], D=PROJECTION["D"], scale=PROJECTION["scale"])
    common = dict(
        save_dir=work / "projected",
        image_size=flags["image_size"],
        projection=projection,
        batch_size=PROJECTION["batch_size"],
        seed=seed,
        lossless=True,
        timestep_respacing=PROJECTION["timestep_respacing"],
        model_path=str(assets / "adm_uncond.pt"),
        model_flags=flags,
    )
    c_run = AlignConfig(base_samples=noisy.out, datatype="C", corruptions=NOISE_CORRUPTIONS, severities=(5,), **common)
    model, diffusion = load_projector(c_run, torch.device("cpu"))
    project_folder(model, diffusion, c_run, device="cpu")
    project_folder(model, diffusion, AlignConfig(base_samples=sub, datatype="D", **common), device="cpu")
    noise = {}
    for c in NOISE_CORRUPTIONS:
        raw = classify_folder(classifier, noisy.out / c / "5")["top1"]
        proj = classify_folder(classifier, work / "projected" / "ImageNet-C-Syn" / c / "5")["top1"]
        noise[c] = {"source": raw, "projected": proj}
    mean_raw = round(float(np.mean([v["source"] for v in noise.values()])), 2)
    mean_proj = round(float(np.mean([v["projected"] for v in noise.values()])), 2)
    clean = classify_folder(classifier, sub)
    clean_proj = classify_folder(classifier, work / "projected" / "DiT-Syn")
    return {
        "b_noise_val": {
            **noise,
            "mean": {"source": mean_raw, "projected": mean_proj},
            "pass": bool(mean_proj > mean_raw),
        },
        "c_clean_val": {
            "source": clean["top1"],
            "projected": clean_proj["top1"],
            "projected_per_class": clean_proj["per_class"],
        },
        "n_per_set": clean["n"],
        "projection": PROJECTION,
        "seconds": round(time.time() - t0, 1),
    }


# ---------------------------------------------------------------------------------------------
# manifest


def asset_info(assets: Path) -> dict[str, Any]:
    out = {}
    for name in SOURCE_MODELS:
        p = assets / name
        if p.is_file():
            out[name] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    return out


def model_records(assets: Path) -> dict[str, Any]:
    """What each bundled model is and how it was trained, read from its config (and the weights' size)."""
    out: dict[str, Any] = {}
    for name, kind in (("adm_uncond", "unconditional"), ("adm_cond", "class-conditional, 10 classes")):
        cfg = adm_config(name.removeprefix("adm_"))
        rec: dict[str, Any] = {"class": f"sda.models.unet.UNetModel (ADM, {kind})", "config": CONFIGS[name]}
        rec.update({k: cfg[k] for k in ("steps", "batch_size", "lr", "warmup", "ema_rate", "seed") if k in cfg})
        rec["model_flags"] = model_flags(name)
        if (assets / f"{name}.pt").is_file():
            rec["params"] = int(sum(v.numel() for v in safe_load(assets / f"{name}.pt").values()))
        out[f"{name}.pt"] = rec
    out["classifier.pth"] = {
        "class": "mmpretrain ImageClassifier, ResNet_CIFAR-18 width 8 (configs/finetune/TinyResNet.py)",
        "epochs": CLASSIFIER_EPOCHS,
        "from_scratch": True,
    }
    return out


@dataclass(frozen=True)
class SourcesRun:
    """What ``mini/train_sources.py`` does: train (unless ``gates_only``), measure the gates (unless ``no_gates``)."""

    data: Path = Path("data/mini")
    results: Path = Path("results/mini/train")
    assets: Path = Path("assets/mini")
    seed: int = 0
    gates_only: bool = False
    no_gates: bool = False
    threads: int = 2


def _data_record(run: SourcesRun) -> dict[str, Any]:
    split_file = run.data / "split.json"
    split = json.loads(split_file.read_text()) if split_file.is_file() else {}
    return {
        "command": f"python mini/prepare_data.py --out {run.data} --seed {run.seed}",
        "seed": run.seed,
        "dataset": split.get("dataset"),
        "sizes": split.get("sizes"),
        "counts": split.get("counts"),
        "split_sha256": file_sha256(split_file) if split else None,
    }


def measure_gates(run: SourcesRun) -> dict[str, Any]:
    """Gates (a)-(c) of the models in ``run.assets``, on the validation split; printed and returned."""
    work = run.results / "gates"
    shutil.rmtree(work, ignore_errors=True)
    classifier = load_source_classifier(ROOT / CLASSIFIER_CONFIG, run.assets / "classifier.pth")
    gates = {"a_synthetic": gate_synthetic(run.assets, work, classifier)}
    gates.update(gate_projection(run.assets, run.data, work, classifier))
    gates["clean_val_accuracy"] = classify_folder(classifier, run.data / "val")["top1"]
    a, b, c = gates["a_synthetic"], gates["b_noise_val"], gates["c_clean_val"]
    print(
        f"gate a: classifier on raw samples {a['top1']:.2f}% (min class {min(a['per_class'].values()):.1f}%) "
        f"-> {'PASS' if a['pass'] else 'FAIL'}"
    )
    print(
        f"gate b: noisy val {b['mean']['source']}% -> projected {b['mean']['projected']}% "
        f"-> {'PASS' if b['pass'] else 'FAIL'}"
    )
    print(f"gate c: clean val {c['source']:.2f}% -> projected {c['projected']:.2f}%")
    return gates


def retrain_sources(run: SourcesRun) -> dict[str, Any]:
    """Train the three source models (unless ``gates_only``), measure the gates, write ``MANIFEST.json``."""
    from sda.mini.data import prepare_digits
    from sda.utils.io import write_json

    torch.set_num_threads(run.threads)
    manifest_path = run.assets / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    t0 = time.time()
    if not run.gates_only:
        prepare_digits(run.data, seed=run.seed)
        info = train_sources(run.data, run.results, run.assets)
        manifest["train_seconds"] = {k: round(v, 1) for k, v in info["seconds"].items()}
        manifest["retrain_sources_seconds"] = round(time.time() - t0, 1)
    commands = training_commands(run.data, run.results, run.assets)
    manifest.update(
        {
            "description": "mini benchmark source models, trained from scratch on the clean train split only "
            "(val chose the settings; test never read)",
            "data": _data_record(run),
            "configs": {**CONFIGS, "classifier": CLASSIFIER_CONFIG},
            "commands": {
                **{k: " ".join(["python", *v]) for k, v in commands.items()},
                "export_note": "--export writes the EMA weights of the final step as a plain state dict",
            },
            "retrain_command": "python mini/train_sources.py",
            "versions": versions("scikit-learn", "mmpretrain", machine=True),
            "assets": asset_info(run.assets),
            "models": model_records(run.assets),
        }
    )
    if not run.no_gates:
        manifest["gates"] = measure_gates(run)
    write_json(manifest_path, manifest)
    print(f"wrote {manifest_path} ({time.time() - t0:.0f} s)")
    return manifest
