"""Train a mini benchmark's source models from scratch, measure its premise gates, write the manifest.

Everything is trained on the clean ``train`` split only, with the project's own entry points (``<b>`` is the
benchmark's name; paths relative to the repository):

1. ``data``: ``data/mini/<b>/{train,val,test}`` and ``split.json`` (``sda.mini.digits`` / ``sda.mini.glyphs``);
2. ``projector``, ``generator``: ``align/train.py --config sda/mini/configs/<b>/adm_uncond.json`` ->
   ``adm_uncond.pt`` and ``gen/train.py --model ADM --config sda/mini/configs/<b>/adm_cond.json`` -> ``adm_cond.pt``,
   side by side (one thread each) when both are asked for; EMA weights as plain state dicts;
3. ``classifier``: ``finetune/train.py sda/mini/configs/<b>/classifier_scratch.py`` -> ``classifier.pth``;
4. ``lowpass``: the same recipe on the train split passed through DDA's low-pass filter (factor D of the
   benchmark's settings) -> ``classifier_lowpass.pth`` (gate e);
5. ``oracle``: a stratified train subset projected with the benchmark's DDA settings, then the source
   classifier fine-tuned on it with the benchmark's SDA recipe (``finetune_config``) -> ``oracle.pth``
   (gate d, and the table's Oracle column);
6. ``gates``: gates (a)-(e) on the validation split (more images than a demo run measures them on).

The models and ``MANIFEST.json`` (commands, seeds, split hash, versions, hashes, times and gates) go to
``assets/mini/<b>/`` under the folder the command runs in (``--assets`` to choose), never into the bundled
``sda/mini/assets/<b>/``: that folder is only read, to start the retrained one with the models a run does not
retrain. Updating the bundled models is a maintainer's copy (``cp assets/mini/<b>/* sda/mini/assets/<b>/``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sda.finetune.config import FinetuneConfig
from sda.mini import gates as G
from sda.mini.benchmarks import CLASSIFIER_CONFIG, SOURCE_MODELS, Benchmark, check_run, get_benchmark, seed_assets
from sda.mini.commands import align_config, command, finetune_config, gen_config
from sda.mini.data import lowpass_folder, lowpass_uint8, stratified_subset
from sda.mini.plan import C_SYN, D_SYN, finetune_options
from sda.mini.procs import StageRunner
from sda.utils.checkpoint import file_sha256, safe_load
from sda.utils.provenance import versions

STEPS = ("data", "projector", "generator", "classifier", "lowpass", "oracle", "gates")
STEP_OF = {"uncond": "projector", "cond": "generator"}
GATE_IMAGES_PER_CLASS = 50  # (a): generator samples per class
GATE_B_PER_CLASS = 5  # (b): val images per class and corruption (noise, blur, pixelate at the main severity)
GATE_CD_PER_CLASS = 30  # (c), (d): clean val images per class


@dataclass(frozen=True)
class SourcesRun:
    """What ``mini/train_sources.py`` does: the ``steps`` of one benchmark (all by default)."""

    benchmark: str = "glyphs32"
    data: Path | None = None  # default data/mini/<benchmark>
    results: Path | None = None  # default results/mini/<benchmark>/train
    assets: Path | None = None  # default assets/mini/<benchmark> (under the working folder, not the package)
    seed: int = 0
    steps: tuple[str, ...] = STEPS
    threads: int = 2

    def __post_init__(self) -> None:
        check_run(self.threads, {"data": self.data, "results": self.results, "assets": self.paths[2]})

    @property
    def bench(self) -> Benchmark:
        return get_benchmark(self.benchmark)

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        b = self.bench
        return (
            self.data or b.data,
            self.results or Path("results/mini") / b.name / "train",
            self.assets or b.retrained,
        )


def model_flags(bench: Benchmark, which: str) -> dict[str, Any]:
    """The model (and diffusion) flags of an ADM config, with its class count, without training settings."""
    cfg = bench.adm_config(which)
    extra = {"num_classes": cfg["num_classes"]} if "num_classes" in cfg else {}
    return {**bench.adm_model_flags(which), **extra}


# ---------------------------------------------------------------------------------------------
# training commands


def training_commands(run: SourcesRun) -> dict[str, list[str]]:
    """Every training command (arguments after ``python``), by the asset it makes."""
    b, (data, results, assets) = run.bench, run.paths
    s, train = b.settings, data / "train"

    def diffusion(script: str, which: str, *model: str) -> list[str]:
        paths = ["--data_dir", str(train), "--results_dir", str(results / f"adm_{which}")]
        return [
            script,
            *model,
            "--config",
            str(b.adm_config_path(which)),
            *paths,
            "--export",
            str(assets / f"adm_{which}.pt"),
        ]

    def scratch(name: str, data_root: Path, **options: Any) -> list[str]:
        final, work = results / f"{name}.pth", results / name
        cfg = FinetuneConfig(
            config=str(b.classifier_scratch), data_root=str(data_root), work_dir=str(work), final_ckpt=str(final),
            no_validate=True, cfg_options=options or None,
        )  # fmt: skip
        return command(cfg)

    oracle_train = data / f"train{b.oracle_train_per_class}"
    projected = results / "oracle_train"
    return {
        "adm_uncond": diffusion("align/train.py", "uncond"),
        "adm_cond": diffusion("gen/train.py", "cond", "--model", "ADM"),
        "classifier": scratch("classifier", train),
        "classifier_lowpass": scratch(
            "classifier_lowpass", data / f"train_lowpass_D{s.D}", **{"train_cfg.max_epochs": b.lowpass_epochs}
        ),
        "oracle_projection": command(
            align_config(b, s, assets / "adm_uncond.pt", oracle_train, "D", projected, run.seed)
        ),
        "oracle": command(
            finetune_config(
                b,
                assets / "classifier.pth",
                projected / D_SYN,
                results / "oracle",
                results / "oracle.pth",
                run.seed,
                finetune_options(s),
            )
        ),  # fmt: skip
    }


def train_steps(run: SourcesRun) -> dict[str, float]:
    """The training steps of ``run.steps`` in order (classifiers are copied into the assets folder without the
    config the trainer writes beside them); returns seconds per job."""
    b, (data, results, assets) = run.bench, run.paths
    cmds = training_commands(run)
    runner = StageRunner(results / "logs", threads=run.threads)
    assets.mkdir(parents=True, exist_ok=True)
    diffusion = [(f"adm_{k}", cmds[f"adm_{k}"]) for k in ("uncond", "cond") if STEP_OF[k] in run.steps]
    if diffusion:
        runner.parallel("diffusion", diffusion)
    if "classifier" in run.steps:
        runner.parallel("classifier", [("classifier", cmds["classifier"])])
        shutil.copyfile(results / "classifier.pth", assets / "classifier.pth")
    if "lowpass" in run.steps:
        lowpass_folder(data / "train", data / f"train_lowpass_D{b.settings.D}", b.settings.D)
        runner.parallel("lowpass", [("classifier_lowpass", cmds["classifier_lowpass"])])
        shutil.copyfile(results / "classifier_lowpass.pth", assets / "classifier_lowpass.pth")
    if "oracle" in run.steps:
        stratified_subset(data / "train", data / f"train{b.oracle_train_per_class}", b.oracle_train_per_class)
        shutil.rmtree(results / "oracle_train", ignore_errors=True)
        runner.parallel("oracle", [("oracle_projection", cmds["oracle_projection"])])
        runner.parallel("oracle", [("oracle", cmds["oracle"])])
        shutil.copyfile(results / "oracle.pth", assets / "oracle.pth")
    return {k: round(v, 1) for k, v in runner.job_seconds.items()}


# ---------------------------------------------------------------------------------------------
# gates


def _project(run: SourcesRun, src: Path, datatype: str, save_dir: Path, corruptions: tuple[str, ...] = ()) -> None:
    """DDA's projection with the benchmark's settings, in this process."""
    from sda.align import project_folder
    from sda.align.runner import load_projector

    b, (_, _, assets) = run.bench, run.paths
    s = b.settings
    extra = {"corruptions": corruptions, "severities": (s.severities[0],)} if datatype == "C" else {}
    cfg = align_config(b, s, assets / "adm_uncond.pt", src, datatype, save_dir, run.seed, **extra)
    model, diffusion = load_projector(cfg, torch.device("cpu"))
    project_folder(model, diffusion, cfg, device="cpu")


def _gate_a_samples(run: SourcesRun, work: Path) -> Path:
    """Raw generator samples with the demo's generation settings (in this process)."""
    from sda.gen import generate

    b, (_, _, assets) = run.bench, run.paths
    generate(gen_config(b, b.settings, assets / "adm_cond.pt", work / "synthetic", run.seed, GATE_IMAGES_PER_CLASS))
    return work / "synthetic"


def measure_gates(run: SourcesRun) -> dict[str, Any]:
    """Gates (a)-(e) of the models in the assets folder, on the validation split; printed and returned."""
    from sda.eval.builders import CorruptedSet, build_corrupted_set

    b, (data, results, assets) = run.bench, run.paths
    s, g = b.settings, b.gates
    work = results / "gates"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    models = G.gate_models(CLASSIFIER_CONFIG, assets)
    source = models[0]
    a = G.gate_a(G.classify_folder(source, _gate_a_samples(run, work)), g)
    sub_b = stratified_subset(data / "val", work / "val_b", GATE_B_PER_CLASS)
    noisy = CorruptedSet(sub_b, work / "val_b-C", G.GATE_B_CORRUPTIONS, (s.severities[0],), "cifar", "png", run.seed)
    build_corrupted_set(noisy)
    _project(run, noisy.out, "C", work / "projected", G.GATE_B_CORRUPTIONS)
    sev = str(s.severities[0])
    raw = {c: G.classify_folder(source, noisy.out / c / sev)["top1"] for c in G.GATE_B_CORRUPTIONS}
    proj_root = work / "projected" / C_SYN
    proj = {c: G.classify_folder(source, proj_root / c / sev)["top1"] for c in G.GATE_B_CORRUPTIONS}
    sub_cd = stratified_subset(data / "val", work / "val_cd", GATE_CD_PER_CLASS)
    _project(run, sub_cd, "D", work / "projected_clean")
    projected_clean = work / "projected_clean" / D_SYN
    gates = {
        "a": a,
        "b": G.gate_b(raw, proj),
        **G.gates_c_d_e(models, sub_cd, projected_clean, data / "val", s.D, g),
    }
    gates["premise"] = G.premise(gates)
    gates["source_on_lowpassed_val"] = G.classify_folder(source, data / "val", lambda x: lowpass_uint8(x, s.D))["top1"]
    gates["n"] = {
        "a": GATE_IMAGES_PER_CLASS * 10,
        "b_per_corruption": GATE_B_PER_CLASS * 10,
        "c_d": GATE_CD_PER_CLASS * 10,
        "e": len(list((data / "val").rglob("*.png"))),
    }
    gates["settings"] = {"respacing": s.respacing, "N": s.N, "D": s.D, "scale": s.scale, "severity": s.severities[0]}
    gates["seconds"] = round(time.time() - t0, 1)
    print(G.gate_line(gates))
    return gates


# ---------------------------------------------------------------------------------------------
# manifest


def asset_info(assets: Path) -> dict[str, Any]:
    out = {}
    for name in SOURCE_MODELS:
        p = assets / name
        if p.is_file():
            out[name] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    return out


def model_records(run: SourcesRun) -> dict[str, Any]:
    """What each bundled model is and how it was trained, read from its config (and the weights' size)."""
    b, (_, _, assets) = run.bench, run.paths
    out: dict[str, Any] = {}
    for which, kind in (("uncond", "unconditional, the projector"), ("cond", "class-conditional, the generator")):
        cfg = b.adm_config(which)
        rec: dict[str, Any] = {
            "class": f"sda.models.unet.UNetModel (ADM, {kind})",
            "config": str(b.adm_config_path(which)),
        }
        rec.update({k: cfg[k] for k in ("steps", "batch_size", "lr", "warmup", "ema_rate", "seed") if k in cfg})
        rec["model_flags"] = model_flags(b, which)
        if (assets / f"adm_{which}.pt").is_file():
            rec["params"] = int(sum(v.numel() for v in safe_load(assets / f"adm_{which}.pt").values()))
        out[f"adm_{which}.pt"] = rec
    arch = f"mmpretrain ImageClassifier, ResNet_CIFAR-18 width 8 ({CLASSIFIER_CONFIG})"
    out["classifier.pth"] = {"class": arch, "config": str(b.classifier_scratch), "from_scratch": True}
    out["classifier_lowpass.pth"] = {
        "class": arch,
        "config": str(b.classifier_scratch),
        "from_scratch": True,
        "data": f"train split through DDA's low-pass filter, D={b.settings.D}",
        "epochs": b.lowpass_epochs,
    }
    out["oracle.pth"] = {
        "class": arch,
        "config": b.finetune_config,
        "load_from": "classifier.pth",
        "data": f"{b.oracle_train_per_class} train images per class projected with the demo's DDA settings",
    }
    return out


def _data_record(run: SourcesRun) -> dict[str, Any]:
    data = run.paths[0]
    split_file = data / "split.json"
    split = json.loads(split_file.read_text()) if split_file.is_file() else {}
    return {
        "command": f"python mini/prepare_data.py --benchmark {run.benchmark} --out {data} --seed {run.seed}",
        "seed": run.seed,
        "dataset": split.get("dataset"),
        "sizes": split.get("sizes"),
        "counts": split.get("counts"),
        "split_sha256": split.get("sha256") or (file_sha256(split_file) if split else None),  # glyphs: over pixels
    }


def retrain_sources(run: SourcesRun) -> dict[str, Any]:
    """The steps of ``run`` (train the source models, measure the gates), then ``MANIFEST.json``."""
    from sda.utils.io import write_json

    b, (data, _, assets) = run.bench, run.paths
    torch.set_num_threads(run.threads)
    seed_assets(b, assets)
    manifest_path = assets / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    t0 = time.time()
    if "data" in run.steps:
        b.prepare(data, run.seed)
    seconds = train_steps(run)
    if seconds:
        manifest["train_seconds"] = {**manifest.get("train_seconds", {}), **seconds}
    commands = training_commands(run)
    manifest.update(
        {
            "benchmark": b.name,
            "description": f"{b.description}: source models trained from scratch on the clean train split only "
            "(val chose the settings; test never read)",
            "data": _data_record(run),
            "configs": [str(p) for p in b.config_files()],
            "commands": {
                **{k: " ".join(["python", *v]) for k, v in commands.items()},
                "export_note": "--export writes the EMA weights of the final step as a plain state dict",
            },
            "retrain_command": f"python mini/train_sources.py --benchmark {b.name}",
            "versions": versions("scikit-learn", "scikit-image", "matplotlib", "mmpretrain", machine=True),
            "assets": asset_info(assets),
            "models": model_records(run),
        }
    )
    if "gates" in run.steps:
        manifest["gates"] = measure_gates(run)
    elif seconds and manifest.pop("gates", None) is not None:
        print(f"{manifest_path}: gates dropped (they measured the models before this retraining; add the gates step)")
    write_json(manifest_path, manifest)
    print(f"wrote {manifest_path} ({time.time() - t0:.0f} s)")
    return manifest
