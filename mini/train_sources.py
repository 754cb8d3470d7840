"""Train the mini benchmark's three source models from scratch, check their quality gates, write the manifest.

    python mini/train_sources.py                      # data prep + 3 trainings + gates -> assets/mini/
    python mini/train_sources.py --gates-only         # re-measure the gates of the committed models

Everything is trained on the clean ``train`` split only, with the project's own entry points:

1. ``mini/prepare_data.py``-equivalent: ``data/mini/{train,val,test}`` (digits, seed 0);
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

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from sda.mini.demo import ADM_CONFIGS, adm_flags, adm_model_flags  # noqa: E402
from sda.utils.cli import run_main  # noqa: E402
from sda.utils.errors import UserError  # noqa: E402
from sda.utils.io import write_json  # noqa: E402

CONFIGS = {f"adm_{k}": v for k, v in ADM_CONFIGS.items()}  # adm_uncond, adm_cond
CLASSIFIER_CONFIG = "configs/mini/classifier_scratch.py"
CLASSIFIER_EPOCHS = 50  # chosen on val: 15 epochs gave 92.8% clean val top-1, 50 epochs 99.2%
NOISES = ("gaussian_noise", "shot_noise", "impulse_noise")
# Settings of the gates = the demo's sampling and projection settings (chosen on val).
GATE_SAMPLING_STEPS = 50
GATE_IMAGES_PER_CLASS = 50
PROJECTION = {"timestep_respacing": "50", "N": 25, "D": 4, "scale": 6.0, "guidance_norm": "batch", "batch_size": 10}
GATE_VAL_PER_CLASS = 1000  # val images per class projected for gates (b) and (c): all of them


def model_flags(name: str) -> dict[str, Any]:
    """The model (and diffusion) flags of a mini diffusion config, with its class count, without training settings."""
    cfg = json.loads((ROOT / CONFIGS[name]).read_text())
    extra = {"num_classes": cfg["num_classes"]} if "num_classes" in cfg else {}
    return {**adm_model_flags(name.removeprefix("adm_")), **extra}


# ---------------------------------------------------------------------------------------------
# training


def training_commands(data: Path, results: Path, assets: Path) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "adm_uncond": [
            py,
            "align/train.py",
            "--config",
            CONFIGS["adm_uncond"],
            "--data_dir",
            str(data / "train"),
            "--results_dir",
            str(results / "adm_uncond"),
            "--export",
            str(assets / "adm_uncond.pt"),
        ],
        "adm_cond": [
            py,
            "gen/train.py",
            "--model",
            "ADM",
            "--config",
            CONFIGS["adm_cond"],
            "--data_dir",
            str(data / "train"),
            "--results_dir",
            str(results / "adm_cond"),
            "--export",
            str(assets / "adm_cond.pt"),
        ],
        "classifier": [
            py,
            "finetune/train.py",
            CLASSIFIER_CONFIG,
            "--data-root",
            str(data / "train"),
            "--work-dir",
            str(results / "classifier" / "work"),
            "--final-ckpt",
            str(results / "classifier" / "classifier.pth"),
            "--no-validate",
            "--cfg-options",
            f"train_cfg.max_epochs={CLASSIFIER_EPOCHS}",
        ],
    }


def run_parallel(cmds: dict[str, list[str]], logs: Path) -> dict[str, float]:
    """Run commands side by side (logs in ``logs/<name>.log``); returns each one's wall seconds."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs, start, seconds = {}, time.time(), {}
    for name, cmd in cmds.items():
        print(f"[train] {name}: {' '.join(cmd[1:])}  (log {logs / (name + '.log')})", flush=True)
        procs[name] = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=open(logs / f"{name}.log", "a"), stderr=subprocess.STDOUT
        )
    while procs:
        for name, p in list(procs.items()):
            if p.poll() is not None:
                seconds[name] = time.time() - start
                del procs[name]
                if p.returncode != 0:
                    raise UserError(f"training {name} failed (exit {p.returncode}); see {logs / (name + '.log')}")
        time.sleep(2)
    return seconds


def train_sources(data: Path, results: Path, assets: Path) -> dict[str, Any]:
    cmds = training_commands(data, results, assets)
    seconds = run_parallel({k: cmds[k] for k in ("adm_uncond", "adm_cond")}, results)
    seconds.update(run_parallel({"classifier": cmds["classifier"]}, results))
    assets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results / "classifier" / "classifier.pth", assets / "classifier.pth")
    return {"commands": {k: " ".join(["python", *v[1:]]) for k, v in cmds.items()}, "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# gates


def load_source_classifier(assets: Path) -> torch.nn.Module:
    from sda.classifiers import build_classifier_from_config

    return build_classifier_from_config(str(ROOT / CLASSIFIER_CONFIG), assets / "classifier.pth")


def classify_folder(model: torch.nn.Module, root: Path, batch: int = 128) -> dict[str, Any]:
    """Top-1 accuracy (%) of ``model`` on a class-folder set ``root/<class:04d>/*.png``, overall and per class."""
    from sda.classifiers import classifier_logits

    files = sorted(root.glob("[0-9][0-9][0-9][0-9]/*.png"))
    if not files:
        raise UserError(f"no images under {root}/<class>/")
    labels = np.array([int(f.parent.name) for f in files])
    preds = []
    for i in range(0, len(files), batch):
        x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[i : i + batch]])  # (B, H, W, 3)
        logits = classifier_logits(model, torch.from_numpy(x).permute(0, 3, 1, 2))  # (B, classes)
        preds.append(logits.argmax(1).numpy())
    correct = np.concatenate(preds) == labels
    per_class = {f"{c:04d}": round(float(100.0 * correct[labels == c].mean()), 2) for c in np.unique(labels)}
    return {"top1": round(float(100.0 * correct.mean()), 2), "per_class": per_class, "n": int(len(files))}


def stratified_subset(src: Path, dst: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` files (sorted) of every class folder of ``src`` into ``dst``."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        for f in sorted(cls.glob("*.png"))[:per_class]:
            (dst / cls.name).mkdir(parents=True, exist_ok=True)
            if not (dst / cls.name / f.name).exists():
                shutil.copyfile(f, dst / cls.name / f.name)
    return dst


def gate_synthetic(
    assets: Path, work: Path, classifier: torch.nn.Module, seed: int = 0, per_class: int = GATE_IMAGES_PER_CLASS
) -> dict[str, Any]:
    """(a): sample with gen/sample.py (its pixel-space default, clip_denoised on) and score the raw samples."""
    import sda.generation as generation

    flags = model_flags("adm_cond")
    out = work / "synthetic"
    argv = [
        "--model",
        "ADM",
        "--ckpt",
        str(assets / "adm_cond.pt"),
        "--image-size",
        str(flags["image_size"]),
        "--num-classes",
        str(flags["num_classes"]),
        "--num-sampling-steps",
        str(GATE_SAMPLING_STEPS),
        "--images-per-class",
        str(per_class),
        "--global-seed",
        str(seed),
        "--out-dir",
        str(out),
        "--per-proc-batch-size",
        "100",
        "--device",
        "cpu",
        "--grid-size",
        "10",
        *adm_flags("cond"),
    ]
    t0 = time.time()
    generation.generate(generation.parse_args(argv))
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


def _projector(assets: Path) -> tuple[Any, Any]:
    from sda.diffusion import create_diffusion
    from sda.models.unet import create_model, load_adm_checkpoint, model_kwargs
    from sda.projection import prepare_model

    flags = model_flags("adm_uncond")
    model = load_adm_checkpoint(create_model(**model_kwargs(flags)), assets / "adm_uncond.pt")
    diffusion = create_diffusion(
        PROJECTION["timestep_respacing"],
        noise_schedule=flags["noise_schedule"],
        learn_sigma=flags["learn_sigma"],
        diffusion_steps=flags["diffusion_steps"],
    )
    return prepare_model(model, "fp32"), diffusion


def gate_projection(assets: Path, data: Path, work: Path, classifier: torch.nn.Module, seed: int = 0) -> dict:
    """(b) and (c): project a stratified val subset (noise-corrupted and clean) and score before/after."""
    from sda.align_data import project_folder
    from sda.corruptions import build_corrupted_set

    t0 = time.time()
    sub = stratified_subset(data / "val", work / "val_subset", GATE_VAL_PER_CLASS)
    build_corrupted_set(
        sub, work / "val_subset-C", corruptions=list(NOISES), severities=[5], profile="cifar", fmt="png", seed=seed
    )
    model, diffusion = _projector(assets)
    kw = {k: PROJECTION[k] for k in ("N", "D", "scale", "guidance_norm", "batch_size")}
    image_size = model_flags("adm_uncond")["image_size"]
    project_folder(
        model,
        diffusion,
        base_samples=work / "val_subset-C",
        save_dir=work / "projected",
        datatype="C",
        image_size=image_size,
        corruptions=list(NOISES),
        severities=5,
        seed=seed,
        lossless=True,
        device="cpu",
        **kw,
    )
    project_folder(
        model,
        diffusion,
        base_samples=sub,
        save_dir=work / "projected",
        datatype="D",
        image_size=image_size,
        seed=seed,
        lossless=True,
        device="cpu",
        **kw,
    )
    noise = {}
    for c in NOISES:
        raw = classify_folder(classifier, work / "val_subset-C" / c / "5")["top1"]
        proj = classify_folder(classifier, work / "projected" / "ImageNet-C-Syn" / c / "5")["top1"]
        noise[c] = {"source": raw, "projected": proj}
    mean_raw = round(float(np.mean([v["source"] for v in noise.values()])), 2)
    mean_proj = round(float(np.mean([v["projected"] for v in noise.values()])), 2)
    clean = classify_folder(classifier, sub)["top1"]
    clean_proj = classify_folder(classifier, work / "projected" / "DiT-Syn")
    return {
        "b_noise_val": {
            **noise,
            "mean": {"source": mean_raw, "projected": mean_proj},
            "pass": bool(mean_proj > mean_raw),
        },
        "c_clean_val": {
            "source": clean,
            "projected": clean_proj["top1"],
            "projected_per_class": clean_proj["per_class"],
        },
        "n_per_set": classify_folder(classifier, sub)["n"],
        "projection": PROJECTION,
        "seconds": round(time.time() - t0, 1),
    }


# ---------------------------------------------------------------------------------------------
# manifest


def versions() -> dict[str, str]:
    import mmpretrain
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "mmpretrain": mmpretrain.__version__,
        "platform": platform.platform(),
    }


def asset_info(assets: Path) -> dict[str, Any]:
    from sda.utils.checkpoint import file_sha256

    out = {}
    for name in ("adm_uncond.pt", "adm_cond.pt", "classifier.pth"):
        p = assets / name
        if p.is_file():
            out[name] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    return out


def model_records(assets: Path) -> dict[str, Any]:
    """What each bundled model is and how it was trained, read from its config (and the weights' size)."""
    from sda.utils.checkpoint import safe_load

    out: dict[str, Any] = {}
    for name, kind in (("adm_uncond", "unconditional"), ("adm_cond", "class-conditional, 10 classes")):
        cfg = json.loads((ROOT / CONFIGS[name]).read_text())
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mini", help="data root (clean splits are (re)written here)")
    p.add_argument("--results", default="results/mini/train", help="training checkpoints and logs")
    p.add_argument("--assets", default="assets/mini", help="where the trained models and MANIFEST.json go")
    p.add_argument("--seed", type=int, default=0, help="data split seed")
    p.add_argument("--gates-only", action="store_true", help="skip training; measure the gates of --assets")
    p.add_argument("--no-gates", action="store_true", help="train only")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the gates")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    from sda.utils.checkpoint import file_sha256

    torch.set_num_threads(args.threads)
    data, results, assets = Path(args.data), Path(args.results), Path(args.assets)
    manifest_path = assets / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    t0 = time.time()
    if not args.gates_only:
        from sda.mini.data import prepare_digits

        prepare_digits(data, seed=args.seed)
        info = train_sources(data, results, assets)
        manifest["train_seconds"] = {k: round(v, 1) for k, v in info["seconds"].items()}
        manifest["retrain_sources_seconds"] = round(time.time() - t0, 1)
    split = json.loads((data / "split.json").read_text()) if (data / "split.json").is_file() else {}
    manifest.update(
        {
            "description": "mini benchmark source models, trained from scratch on the clean train split only "
            "(val chose the settings; test never read)",
            "data": {
                "command": f"python mini/prepare_data.py --out {data} --seed {args.seed}",
                "seed": args.seed,
                "dataset": split.get("dataset"),
                "sizes": split.get("sizes"),
                "counts": split.get("counts"),
                "split_sha256": file_sha256(data / "split.json") if split else None,
            },
            "configs": {**CONFIGS, "classifier": CLASSIFIER_CONFIG},
            "commands": {
                **{k: " ".join(["python", *v[1:]]) for k, v in training_commands(data, results, assets).items()},
                "export_note": "--export writes the EMA weights of the final step as a plain state dict",
            },
            "retrain_command": "python mini/train_sources.py",
        }
    )
    manifest["versions"] = versions()
    manifest["assets"] = asset_info(assets)
    manifest["models"] = model_records(assets)
    if not args.no_gates:
        work = results / "gates"
        shutil.rmtree(work, ignore_errors=True)
        classifier = load_source_classifier(assets)
        gates = {"a_synthetic": gate_synthetic(assets, work, classifier)}
        gates.update(gate_projection(assets, data, work, classifier))
        gates["clean_val_accuracy"] = classify_folder(classifier, data / "val")["top1"]
        manifest["gates"] = gates
        a, b = gates["a_synthetic"], gates["b_noise_val"]
        print(
            f"gate a: classifier on raw samples {a['top1']}% (min class {min(a['per_class'].values())}%) "
            f"-> {'PASS' if a['pass'] else 'FAIL'}"
        )
        print(
            f"gate b: noisy val {b['mean']['source']}% -> projected {b['mean']['projected']}% "
            f"-> {'PASS' if b['pass'] else 'FAIL'}"
        )
        print(f"gate c: clean val {gates['c_clean_val']['source']}% -> projected {gates['c_clean_val']['projected']}%")
    write_json(manifest_path, manifest)
    print(f"wrote {manifest_path} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    run_main(main)
