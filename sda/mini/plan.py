"""What one seed of a mini benchmark runs: its folders and every stage job as the stage's typed config.

``Seed`` names the folders; ``data_jobs``, ``gen_job``, ``align_jobs``, ``finetune_jobs`` and ``eval_jobs`` return
``(name, config)`` pairs (``sda.mini.commands`` builds the configs); ``sda.mini.pipeline`` runs them and
``sda.mini.record`` turns their outputs into the seed's record. Nothing here runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sda.align.layout import SYN_ROOTS
from sda.eval.config import EvalConfig
from sda.eval.tta import TTAConfig
from sda.mini.benchmarks import CLASSIFIER_CONFIG, Benchmark, Settings
from sda.mini.commands import (
    align_config,
    bn_adapt_config,
    build_c_config,
    diffpure_config,
    finetune_config,
    gen_config,
)
from sda.utils.layout import CORRUPTIONS

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
C_SYN, D_SYN = SYN_ROOTS["C"], SYN_ROOTS["D"]  # align's output folders of a C and a D layout


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
        """The stratified subsets and their "-C" sets that the data stage makes."""
        s, d = self.s, self.data
        return {
            "val": d / "val",
            "val_clean": d / f"val{s.val_clean_per_class}",
            "val_sub": d / f"val{s.val_per_class}",
            "val-C": d / f"val{s.val_per_class}-C",
            "test": d / f"test{s.test_per_class}",
            "test-C": d / f"test{s.test_per_class}-C",
        }

    @property
    def severities(self) -> str:
        return ",".join(map(str, self.s.severities))


# ---------------------------------------------------------------------------------------------
# the jobs of each stage


def data_jobs(r: Seed) -> list[tuple[str, Any]]:
    """The "-C" sets of the val and test subsets (val at the main severity, test at every severity)."""
    sets = r.sets
    return [
        ("build_c_val", build_c_config(sets["val_sub"], sets["val-C"], r.s.severities[0])),
        ("build_c_test", build_c_config(sets["test"], sets["test-C"], r.severities)),
    ]


def gen_job(r: Seed) -> tuple[str, Any]:
    """Stage 1: the labelled synthetic set from the class-conditional ADM (pixel space)."""
    return "gen", gen_config(r.bench, r.s, r.asset("adm_cond.pt"), r.out / "gen", r.seed, r.s.images_per_class)


def align_job(
    r: Seed, base: Path, datatype: str, save_dir: Path, corruptions: tuple[str, ...] = (), severity: str = ""
):
    """``align/project.py`` with the benchmark's projector and DDA settings (C: ``severity``, default all of the
    run's; ``corruptions``, default all 15)."""
    run = {"corruptions": corruptions or "all", "severities": severity or r.severities} if datatype == "C" else {}
    return align_config(r.bench, r.s, r.asset("adm_uncond.pt"), base, datatype, save_dir, r.seed, **run)


def align_jobs(r: Seed) -> list[tuple[str, Any]]:
    """Stage 2: the synthetic set (MoD), the target test set (two halves), the validation sets, DiffPure."""
    half = (len(CORRUPTIONS) + 1) // 2
    sets, out = r.sets, r.out
    return [
        ("align_test_a", align_job(r, sets["test-C"], "C", out / "test", CORRUPTIONS[:half])),
        ("align_test_b", align_job(r, sets["test-C"], "C", out / "test", CORRUPTIONS[half:])),
        ("diffpure_test", diffpure_config(align_job(r, sets["test-C"], "C", out / "diffpure"), r.s)),
        ("align_val", align_job(r, sets["val-C"], "C", out / "val", severity=str(r.s.severities[0]))),
        ("align_synthetic", align_job(r, out / "gen", "D", out)),
        ("align_val_clean", align_job(r, sets["val_clean"], "D", out / "val_clean")),
    ]


def align_manifests(r: Seed) -> list[Path]:
    """The manifest of every set stage 2 writes (complete when each says so)."""
    out = r.out
    test = [f"{c}/{v}/align_manifest.json" for c in CORRUPTIONS for v in r.s.severities]
    val = [f"{c}/{r.s.severities[0]}/align_manifest.json" for c in CORRUPTIONS]
    return [
        out / D_SYN / "align_manifest.json",
        out / "val_clean" / D_SYN / "align_manifest.json",
        *(out / "test" / C_SYN / c for c in test),
        *(out / "diffpure" / C_SYN / c for c in test),
        *(out / "val" / C_SYN / c for c in val),
    ]


def finetune_options(s: Settings) -> dict[str, Any]:
    return {} if s.finetune_epochs is None else {"train_cfg.max_epochs": s.finetune_epochs}


def finetune_jobs(r: Seed) -> list[tuple[str, Any]]:
    """Stage 3: SDA's fine-tuning on the aligned synthetic set; the ablation on the raw one; BN-adapt."""
    source, out, opts = r.asset("classifier.pth"), r.out, finetune_options(r.s)
    return [
        (
            "finetune",
            finetune_config(r.bench, source, out / D_SYN, out / "work_ft", out / "finetuned.pth", r.seed, opts),
        ),
        (
            "finetune_nomod",
            finetune_config(
                r.bench, source, out / "gen", out / "work_nomod", out / "finetuned_nomod.pth", r.seed, opts
            ),
        ),
        ("bn_adapt", bn_adapt_config(source, out / D_SYN, out / "bn_adapt.pth")),
    ]


def eval_job(run: str, severity: int) -> str:
    """The eval job holding ``run``'s column at ``severity``: MEMO's has one job per severity."""
    return f"{MEMO_RUN}_{severity}" if run == MEMO_RUN else run


def eval_runs(s: Settings) -> tuple[str, ...]:
    """Every eval job of a seed, slowest first: MEMO's per-severity jobs (if it is a column), then EVAL_RUNS."""
    memo = tuple(eval_job(MEMO_RUN, sev) for sev in s.severities) if "memo" in s.tta else ()
    return (*memo, *EVAL_RUNS)


def eval_config(r: Seed, name: str) -> EvalConfig:
    """``eval/evaluate.py`` for one of :func:`eval_runs` (validation, the test set with one fine-tuned model, or
    MEMO at one severity)."""
    out, s = r.out, r.s
    model = {"test_nomod": "finetuned_nomod.pth", "test_bn_adapt": "bn_adapt.pth"}.get(name, "finetuned.pth")
    ckpt = r.asset("oracle.pth") if name == "test_oracle" else out / model
    base = EvalConfig(
        config=CLASSIFIER_CONFIG,
        checkpoint=str(ckpt),
        originckpt=str(r.asset("classifier.pth")),
        data_prefix1=str(r.sets["test-C"]),
        data_prefix2=str(out / "test" / C_SYN),
        severities=r.severities,
        modes="sda",
        out=str(out / f"eval_{name}.json"),
        device="cpu",
        num_workers=0,
        seed=r.seed,
    )
    if name == "val":
        paths = dict(data_prefix1=str(r.sets["val-C"]), data_prefix2=str(out / "val" / C_SYN))
        return replace(base, **paths, severities=str(s.severities[0]), modes=",".join([*TABLE_MODES, *CONTROL_MODES]))
    if name.startswith(f"{MEMO_RUN}_"):  # MEMO at one severity; "first" (the source) is there for the record
        tta = TTAConfig(methods=("memo",), memo_views=s.memo_views)
        sev = name.removeprefix(f"{MEMO_RUN}_")
        return replace(base, data_prefix2=None, severities=sev, modes="first", tta=tta)
    if name != "test":
        return base
    modes = ",".join([*TABLE_MODES, *CONTROL_MODES, "diffpure"])
    tta = TTAConfig(methods=tuple(m for m in s.tta if m != "memo"), tta_batch_size=s.tta_batch)
    return replace(base, modes=modes, data_prefix_diffpure=str(out / "diffpure" / C_SYN), tta=tta)


def eval_jobs(r: Seed) -> list[tuple[str, Any]]:
    """Stage 4: validation and the test set with every fine-tuned model (side by side)."""
    return [(f"eval_{n}", eval_config(r, n)) for n in eval_runs(r.s)]
