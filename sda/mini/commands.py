"""The stage commands a mini benchmark runs, built as the stages' typed configs from the benchmark's settings.

Every builder returns the stage's own config (``GenConfig``, ``AlignConfig``, ``FinetuneConfig``,
``BNAdaptConfig``, ``EvalConfig``, ``CorruptedSet``), so its checks run before a job starts and its command line
is generated from it (``command``): the demo, the study, the powered test and the source-model training drive
the stages the way a user does, with no flag written twice.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sda.align.config import AlignConfig, ProjectionConfig
from sda.eval.builders import CorruptedSet
from sda.finetune.config import BNAdaptConfig, FinetuneConfig
from sda.gen.config import ADM_MODEL, GenConfig
from sda.mini.benchmarks import CLASSIFIER_CONFIG, Benchmark, Settings
from sda.models.adm_flags import ADM_FLAGS, complete_flags

# The entry point of each config (a path relative to the repository), for the subprocess.
SCRIPTS: dict[type, str] = {
    GenConfig: "gen/sample.py",
    AlignConfig: "align/project.py",
    FinetuneConfig: "finetune/train.py",
    BNAdaptConfig: "finetune/bn_adapt.py",
    CorruptedSet: "eval/build_c.py",
}


def command(cfg: Any) -> list[str]:
    """The arguments after ``python`` that run ``cfg``: its entry point and the flags generated from it."""
    from sda.eval.config import EvalConfig

    script = "eval/evaluate.py" if isinstance(cfg, EvalConfig) else SCRIPTS[type(cfg)]
    return [script, *cfg.to_argv()]


def gen_config(
    bench: Benchmark, s: Settings, ckpt: Path, out_dir: Path, seed: int, per_class: int, **overrides: Any
) -> GenConfig:
    """The labelled synthetic set from the benchmark's class-conditional ADM (pixel space). ``overrides``:
    ``cfg_scale`` or model flags (e.g. ``channel_mult`` of another generator)."""
    cfg_scale = overrides.pop("cfg_scale", s.cfg_scale)
    flags = complete_flags({**bench.adm_model_flags("cond"), **overrides}, ADM_FLAGS["256_cond"])
    return GenConfig(
        model=ADM_MODEL,
        image_size=flags["image_size"],
        num_classes=bench.adm_config("cond")["num_classes"],
        ckpt=str(ckpt),
        num_sampling_steps=s.sampling_steps,
        cfg_scale=cfg_scale,
        images_per_class=per_class,
        global_seed=seed,
        out_dir=str(out_dir),
        per_proc_batch_size=100,
        device="cpu",
        no_vae=True,
        learn_sigma=flags["learn_sigma"],
        adm=flags,
    )


def align_config(
    bench: Benchmark, s: Settings, projector: Path, base: Path, datatype: str, save_dir: Path, seed: int, **run: Any
) -> AlignConfig:
    """DDA's projection with the benchmark's projector and settings; ``run``: other AlignConfig fields
    (``corruptions``, ``severities``, ...)."""
    flags = complete_flags(bench.adm_model_flags("uncond"))
    projection = ProjectionConfig(N=s.N, D=s.D, scale=s.scale, guidance_norm=s.guidance_norm)
    return AlignConfig(
        base_samples=base,
        datatype=datatype,
        save_dir=save_dir,
        image_size=flags["image_size"],
        projection=projection,
        batch_size=s.align_batch,
        seed=seed,
        lossless=True,
        timestep_respacing=str(s.respacing),
        model_path=str(projector),
        model_flags=flags,
        device="cpu",
        **run,
    )


def diffpure_config(cfg: AlignConfig, s: Settings) -> AlignConfig:
    """DiffPure's purification with the same projector, as DDA's author ran it on ImageNet-C: the reverse VP-SDE
    from t* = ``diffpure_N`` of the 1000-step schedule, Euler-Maruyama steps of ``diffpure_dt``, no guidance."""
    projection = replace(cfg.projection, N=s.diffpure_N, guidance="sde", sde_dt=s.diffpure_dt)
    return replace(cfg, projection=projection)


def finetune_config(
    bench: Benchmark, source: Path, data_root: Path, work_dir: Path, final: Path, seed: int, options: dict[str, Any]
) -> FinetuneConfig:
    """The source classifier fine-tuned on a class-folder set with the benchmark's recipe (``finetune_config``);
    ``options``: more ``--cfg-options`` (the epochs, a learning rate)."""
    return FinetuneConfig(
        config=bench.finetune_config,
        data_root=str(data_root),
        work_dir=str(work_dir),
        final_ckpt=str(final),
        no_validate=True,
        cfg_options={"load_from": str(source), "randomness.seed": seed, **options},
    )


def bn_adapt_config(source: Path, data_root: Path, out: Path) -> BNAdaptConfig:
    return BNAdaptConfig(config=CLASSIFIER_CONFIG, checkpoint=str(source), data_root=str(data_root), out=str(out))


def build_c_config(src: Path, out: Path, severities: str | int) -> CorruptedSet:
    """A "-C" set of a mini split: the CIFAR-10-C severity profile (32 px), PNG, seed 0."""
    return CorruptedSet(src=src, out=out, profile="cifar", fmt="png", severities=str(severities), seed=0)
