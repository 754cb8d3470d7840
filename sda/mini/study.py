"""The validation study of a mini benchmark: which fine-tuning strength, synthetic set size and generator
make SDA's synthetic data align the classifier, chosen on the validation split only.

    python mini/study.py                      # glyphs32: every row of the three phases (resumes), then the gates
    python mini/study.py --quick              # tiny counts (CI)

Validation is projected once per study (all clean val images; ``valC_per_class`` images per class and
corruption at severity 5, rotated so corruptions use different base images where the split allows), and the
source classifier's outputs on it are cached; every row then costs its fine-tune (and, for a new synthetic
set, its generation and projection) plus seconds of scoring. Three phases, in this order, each choosing on
validation before the next starts:

1. **strength**: learning rate x epochs of the benchmark's recipe (from the paper's ratio to the old recipe),
   plus head-only and norm-affine-only variants, on the demo's synthetic set; chosen by SDA - DDA on val-C;
2. **size**: synthetic images per class, each beside a control fine-tuned on as many projected *real* train
   images (the ceiling at that size); chosen by SDA - DDA on val-C: the smallest size within
   ``size_tolerance`` points of the best (the cost grows with the size);
3. **generator**: the guidance scale, and a wider generator after two training lengths, compared at the chosen
   size (at most ``generator_per_class``); chosen by gate (f) (the fine-tuned model alone on projected clean
   val against the source: the alignment the data gives), with gate (g) (realism) beside it. The chosen
   generator and scale at the chosen size make the final row, whose gates (a)-(g) are reported.

Every row records its wall time; ``study.json`` holds the rows, the sets' gates (a) and (g), the choices and
the gates (a)-(g) of the chosen setting with their 95% intervals; ``study.md`` the tables.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sda.mini.benchmarks import CLASSIFIER_CONFIG, Benchmark, check_run, get_benchmark
from sda.mini.commands import align_config, build_c_config, command, finetune_config, gen_config
from sda.mini.data import rotated_c_subset, stratified_subset
from sda.mini.plan import C_SYN, D_SYN
from sda.mini.procs import StageRunner, complete_manifest
from sda.mini.report import study_figure
from sda.mini.scoring import ImageSet, Scores, correct, top1
from sda.utils import stats
from sda.utils.errors import UserError
from sda.utils.io import write_json, write_text
from sda.utils.layout import CORRUPTIONS

STUDY = "study-1"  # the study's version in its key: bump when a change alters its results
SEVERITY = 5
PINNED_THREADS = 1  # fine-tunes on one thread each: the model does not depend on the machine's core count


@dataclass(frozen=True)
class Recipe:
    """How strongly the source classifier is fine-tuned: the benchmark's recipe at another lr and length,
    all weights or only the head (``head``) or only the BatchNorm affine parameters and statistics (``norm``)."""

    lr: float
    epochs: int
    trainable: str = "all"

    @property
    def name(self) -> str:
        return f"lr{self.lr:g}-ep{self.epochs}" + ("" if self.trainable == "all" else f"-{self.trainable}")

    def config(self, bench: Benchmark) -> str:
        base = Path(bench.finetune_config)
        return str(base if self.trainable == "all" else base.with_name(f"{base.stem}_{self.trainable}.py"))

    def options(self) -> dict[str, Any]:
        """The ``--cfg-options`` that set this recipe over the benchmark's."""
        return {"optim_wrapper.optimizer.lr": self.lr, "train_cfg.max_epochs": self.epochs}


def read_study(path: Path) -> dict[str, Any]:
    """A ``study.json``, each row with its training set's name (``set``; filled in for rows written before
    the rows carried it)."""
    d = json.loads(path.read_text())
    for r in d["rows"].values():
        r.setdefault("set", TrainSet(**r["train"]).name)
    return d


@dataclass(frozen=True)
class Generator:
    """A class-conditional generator: weights (EMA state dict or a ``gen/train.py`` checkpoint) and model flags
    over the benchmark's ``adm_cond.json``."""

    name: str
    ckpt: str  # relative to the repository, or absolute
    flags: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSet:
    """A fine-tuning set: ``per_class`` synthetic images of a generator at a guidance scale (projected by DDA,
    as SDA's MoD), or as many projected real train images (``generator=None``: the control)."""

    per_class: int
    generator: str | None = "bundled"
    cfg_scale: float = 8.0
    seed: int = 0

    @property
    def name(self) -> str:
        seed = f"-s{self.seed}" if self.seed else ""  # each seed's set, and its models, apart (the study's: seed 0)
        if self.generator is None:
            return f"real{self.per_class}{seed}"
        return f"syn-{self.generator}-cfg{self.cfg_scale:g}-{self.per_class}{seed}"

    @property
    def draw(self) -> str:
        """The generated draw this set is a subset of (one draw per generator, scale and seed)."""
        return f"{self.generator}-cfg{self.cfg_scale:g}-s{self.seed}"


@dataclass(frozen=True)
class Row:
    phase: str
    recipe: Recipe
    train: TrainSet

    @property
    def name(self) -> str:
        return f"{self.train.name}__{self.recipe.name}"


@dataclass(frozen=True)
class StudyPlan:
    """The study's rows per phase. ``None`` fields are filled by the earlier phases' choices."""

    strength: tuple[Recipe, ...]
    sizes: tuple[int, ...]
    generators: tuple[Generator, ...]
    cfg_scales: tuple[float, ...]
    demo_set: TrainSet  # phase 1's set
    valC_per_class: int = 5
    max_real_per_class: int = 300
    generator_per_class: int = 100  # phase 3 compares generators at this size at most (cost)
    size_tolerance: float = 1.0  # phase 2 takes the smallest size within this many points of the best


def glyphs32_plan(bench: Benchmark) -> StudyPlan:
    """glyphs32's study. The paper fine-tunes ResNet-50 at (5e-4 / 512) / (0.1 / 256) = 0.0025 of its
    pre-training learning rate per sample; for TinyResNet (trained at 0.1 / 64) with batch 32 that is
    lr 1.25e-4. The old recipe: lr 0.05, 40 epochs."""
    lrs = (1.25e-4, 1e-3, 5e-3, 2e-2, 5e-2)
    strength = tuple(Recipe(lr, ep) for lr in lrs for ep in (10, 40))
    strength += (Recipe(5e-3, 40, "head"), Recipe(5e-2, 40, "head"), Recipe(5e-3, 40, "norm"), Recipe(5e-2, 40, "norm"))
    s = bench.settings
    gens = (
        Generator("bundled", str(bench.assets / "adm_cond.pt")),
        # a wider UNet (channel_mult 1,2,4,4: 4.7M parameters against 1.4M), after 4,000 and 6,000 steps of one run:
        # width against the bundled model, training length within the wide run
        Generator("wide4k", "results/mini/glyphs32/generators/wide4k.pt", {"channel_mult": "1,2,4,4"}),
        Generator("wide6k", "results/mini/glyphs32/generators/wide6k.pt", {"channel_mult": "1,2,4,4"}),
    )
    return StudyPlan(
        strength=strength,
        sizes=(30, 100, 300),
        generators=gens,
        cfg_scales=(4.0, 8.0, 12.0),
        demo_set=TrainSet(s.images_per_class, "bundled", s.cfg_scale),
    )


def quick_plan(bench: Benchmark) -> StudyPlan:
    """A CI-sized study: the same code paths, minutes on a CPU."""
    return StudyPlan(
        strength=(Recipe(1e-3, 2), Recipe(5e-2, 2), Recipe(5e-2, 2, "head")),
        sizes=(2, 3),
        generators=(Generator("bundled", str(bench.assets / "adm_cond.pt")),),
        cfg_scales=(4.0,),  # not the demo set's 8: a generator row that is not also a size row
        demo_set=TrainSet(2, "bundled", 8.0),
        valC_per_class=1,
        max_real_per_class=3,
    )


# ---------------------------------------------------------------------------------------------
# the study's folders and shared validation data


@dataclass
class Study:
    bench: Benchmark
    plan: StudyPlan
    out: Path
    data: Path
    assets: Path
    threads: int
    quick: bool = False
    rows: dict[str, dict] = field(default_factory=dict)
    sets: dict[str, dict] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.s = self.bench.quick if self.quick else self.bench.settings
        self.run = StageRunner(self.out / "logs", self.threads)
        self.scores = Scores(self.out / "scores", Path(CLASSIFIER_CONFIG))
        self.source = self.assets / "classifier.pth"

    # --- validation, projected once
    @property
    def val(self) -> ImageSet:
        root = self.data / "val" if not self.quick else self.data / "val1"
        return ImageSet.folder("val", root)

    @property
    def val_proj(self) -> ImageSet:
        return self.val.moved("val_proj", self.out / "val_proj" / D_SYN)

    @property
    def valC(self) -> ImageSet:
        return ImageSet.folder("valC", self.out / "valC")

    @property
    def valC_proj(self) -> ImageSet:
        return self.valC.moved("valC_proj", self.out / "valC_proj" / C_SYN)

    def project(self, name: str, base: Path, datatype: str, save_dir: Path, seed: int = 0) -> list:
        """One align job with the benchmark's projector and DDA settings (C: every corruption at severity 5)."""
        extra = {"corruptions": "all", "severities": str(SEVERITY)} if datatype == "C" else {}
        projector = self.assets / "adm_uncond.pt"
        return [(name, command(align_config(self.bench, self.s, projector, base, datatype, save_dir, seed, **extra)))]

    def prepare_validation(self) -> None:
        """Clean val and the rotated val-C subset, projected once (seed 0)."""
        if self.quick:
            stratified_subset(self.data / "val", self.data / "val1", 1)
        full_c = self.data / "val-C-full"
        self.run("data", "build_val_c", command(build_c_config(self.val.root, full_c, SEVERITY)))
        rotated_c_subset(full_c, self.out / "valC", self.plan.valC_per_class, SEVERITY)
        jobs = self.project("project_val", self.val.root, "D", self.out / "val_proj")
        jobs += self.project("project_valC", self.out / "valC", "C", self.out / "valC_proj")
        manifests = [self.out / "val_proj" / D_SYN / "align_manifest.json"]
        manifests += [self.out / "valC_proj" / C_SYN / c / str(SEVERITY) / "align_manifest.json" for c in CORRUPTIONS]
        if not all(map(complete_manifest, manifests)):
            self.run.parallel("project_val", jobs)

    # --- training sets
    def generator(self, name: str) -> Generator:
        return next(g for g in self.plan.generators if g.name == name)

    def draw_size(self, t: TrainSet) -> int:
        """Images per class of the draw ``t`` is cut from: phase 1's generator and scale are drawn once at the
        largest size of phase 2 (its sets are nested subsets of one draw); any other set is its own draw."""
        demo, top = self.plan.demo_set, max(self.plan.sizes)
        same = (t.generator, t.cfg_scale, t.seed) == (demo.generator, demo.cfg_scale, demo.seed)
        return top if same and t.per_class <= top else t.per_class

    def draw_dir(self, t: TrainSet) -> Path:
        return self.out / "draws" / f"{t.draw}-n{self.draw_size(t)}"

    def make_draw(self, t: TrainSet) -> dict[str, float]:
        """Generate (:meth:`draw_size` images per class) and project (MoD) one draw; returns seconds per stage."""
        g, out, seconds = self.generator(t.generator), self.draw_dir(t), {}
        ckpt = Path(g.ckpt)  # relative: to the current directory, as every path of the study
        if not ckpt.is_file():
            raise UserError(
                f"generator {g.name}: {ckpt} not found; train and export it first (README, 'validation study')"
            )
        if not complete_manifest(out / "gen" / "manifest.json"):
            cfg = gen_config(
                self.bench, self.s, ckpt, out / "gen", t.seed, self.draw_size(t), cfg_scale=t.cfg_scale, **g.flags
            )
            t0 = time.time()
            self.run("gen", f"gen_{t.draw}", command(cfg))
            seconds["gen"] = round(time.time() - t0, 1)
        if not complete_manifest(out / D_SYN / "align_manifest.json"):
            t0 = time.time()
            self.run.parallel("align", self.project(f"align_{t.draw}", out / "gen", "D", out, seed=t.seed))
            seconds["align"] = round(time.time() - t0, 1)
        return seconds

    def make_real(self) -> dict[str, float]:
        """The projected real train images of the controls (seed 0), once."""
        out = self.out / "real"
        if complete_manifest(out / D_SYN / "align_manifest.json"):
            return {}
        base = stratified_subset(
            self.data / "train", self.data / f"train{self.plan.max_real_per_class}", self.plan.max_real_per_class
        )
        t0 = time.time()
        self.run.parallel("align", self.project("align_real", base, "D", out))
        return {"align": round(time.time() - t0, 1)}

    def train_dir(self, t: TrainSet, aligned: bool = True) -> Path:
        """The class folders of a set: a stratified subset (first images per class) of its draw."""
        if t.generator is None:
            src, dst = self.out / "real" / D_SYN, self.out / "sets" / t.name
        else:
            sub = D_SYN if aligned else "gen"
            src, dst = self.draw_dir(t) / sub, self.out / "sets" / (t.name + ("" if aligned else "-raw"))
        return stratified_subset(src, dst, t.per_class)

    # --- rows
    def all_rows(self) -> list[Row]:
        p, c = self.plan, self.choices
        rows = [Row("strength", r, p.demo_set) for r in p.strength]
        recipe = c.get("recipe")
        if recipe is None:
            return rows
        for n in p.sizes:
            rows += [Row("size", recipe, replace(p.demo_set, per_class=n)), Row("size", recipe, TrainSet(n, None))]
        size = c.get("per_class")
        if size is None:
            return rows
        base = replace(p.demo_set, per_class=min(size, p.generator_per_class))
        rows += [Row("generator", recipe, replace(base, cfg_scale=k)) for k in p.cfg_scales]
        rows += [Row("generator", recipe, replace(base, generator=g.name)) for g in p.generators[1:]]
        return rows

    def finetune(self, row: Row, data_root: Path, tag: str = "", seed: int = 0) -> Path:
        """The source fine-tuned with ``row``'s recipe on ``data_root`` (kept once made)."""
        final = self.out / "ft" / f"{row.name}{tag}.pth"
        if not final.is_file():
            work = self.out / "ft" / f"work_{row.name}{tag}"
            cfg = finetune_config(self.bench, self.source, data_root, work, final, seed, row.recipe.options())
            cfg = replace(cfg, config=row.recipe.config(self.bench))
            self.run.parallel("finetune", [(f"ft_{row.name}{tag}", command(cfg))], threads_per_job=PINNED_THREADS)
            shutil.rmtree(work, ignore_errors=True)  # per-epoch checkpoints: the final weights are what is scored
        return final

    def score_row(self, row: Row, ckpt: Path) -> dict[str, Any]:
        """Gate (f), the model alone on clean val, and SDA vs DDA on val-C (paired 95% intervals)."""
        sc, src = self.scores, self.source
        vp, vc, vcp = self.val_proj, self.valC, self.valC_proj
        groups_v, groups_c = vp.base_images, vc.base_images
        ft_p, src_p = top1(sc(ckpt, vp), vp.labels), top1(sc(src, vp), vp.labels)
        sda = correct("sda", sc(src, vc), sc(ckpt, vcp), vc.labels)
        dda = correct("sum", sc(src, vc), sc(src, vcp), vc.labels)
        f = stats.bootstrap(stats.diff_pct, ft_p, src_p, groups=groups_v)
        return {
            "f": {"ft_projected": stats.mean_pct(ft_p), "source_projected": stats.mean_pct(src_p), **_iv(f)},
            "ft_clean": stats.mean_pct(top1(sc(ckpt, self.val), self.val.labels)),
            "sda": stats.mean_pct(sda),
            "dda": stats.mean_pct(dda),
            "sda_minus_dda": _iv(stats.bootstrap(stats.diff_pct, sda, dda, groups=groups_c)),
        }

    def do_row(self, row: Row) -> dict[str, Any]:
        if row.name in self.rows:
            return self.rows[row.name]
        t0, seconds = time.time(), {}
        if row.train.generator is None:
            seconds.update(self.make_real())
        else:
            seconds.update(self.make_draw(row.train))
            self.set_gates(row.train)
        t1 = time.time()
        ckpt = self.finetune(row, self.train_dir(row.train))
        seconds["finetune"] = round(time.time() - t1, 1)
        record = {
            "phase": row.phase,
            "recipe": asdict(row.recipe),
            "train": asdict(row.train),
            "set": row.train.name,
            **self.score_row(row, ckpt),
        }
        record["seconds"] = {**seconds, "total": round(time.time() - t0, 1)}
        self.rows[row.name] = record
        self.scores.forget(ckpt)
        self.save()
        print(f"[study] {row.name}: {_row_line(record)}", flush=True)
        return record

    # --- per-set gates (a) and (g)
    def set_gates(self, t: TrainSet) -> dict[str, Any]:
        if t.name in self.sets:
            return self.sets[t.name]
        raw = ImageSet.folder(f"{t.name}-raw", self.train_dir(t, aligned=False))
        aligned = ImageSet.folder(t.name, self.train_dir(t))
        self.make_real()
        real = ImageSet.folder(f"real{t.per_class}", self.train_dir(TrainSet(t.per_class, None)))
        a_correct = top1(self.scores(self.source, raw), raw.labels)
        per_class = {int(k): stats.mean_pct(a_correct[raw.labels == k]) for k in np.unique(raw.labels)}
        lo, hi = stats.wilson(int(a_correct.sum()), len(a_correct))
        g = realism(self.scores, self.source, aligned, real, self.val_proj)
        self.sets[t.name] = {
            "a": {"top1": stats.mean_pct(a_correct), "lo": lo, "hi": hi, "per_class": per_class},
            "g": g,
        }
        self.save()
        return self.sets[t.name]

    # --- choices
    def choose(self) -> None:
        """Run the phases in order; each phase's choice is made on validation before the next phase's rows."""
        strength = [self.do_row(r) for r in self.all_rows() if r.phase == "strength"]
        if "recipe" not in self.choices:
            best = max(strength, key=lambda r: r["sda_minus_dda"]["value"])
            self.choices["recipe"] = Recipe(**best["recipe"])
        size_rows = [self.do_row(r) for r in self.all_rows() if r.phase == "size"]
        if "per_class" not in self.choices:  # the smallest size near the best: the cost grows with the size
            syn = [r for r in size_rows if r["train"]["generator"] is not None]
            best = max(r["sda_minus_dda"]["value"] for r in syn)
            near = [r for r in syn if r["sda_minus_dda"]["value"] >= best - self.plan.size_tolerance]
            self.choices["per_class"] = min(r["train"]["per_class"] for r in near)
        gen_rows = [self.do_row(r) for r in self.all_rows() if r.phase == "generator"]
        if "train" not in self.choices:  # the best generator and scale, at the size phase 2 chose
            best = max(gen_rows, key=lambda r: r["f"]["value"])
            self.choices["train"] = replace(TrainSet(**best["train"]), per_class=self.choices["per_class"])
        self.do_row(Row("chosen", self.choices["recipe"], self.choices["train"]))
        self.save()

    def save(self) -> None:
        choices = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in self.choices.items()}
        write_json(self.out / "study.json", {"study": STUDY, "rows": self.rows, "sets": self.sets, "choices": choices})

    def load(self) -> None:
        path = self.out / "study.json"
        if path.is_file():
            d = read_study(path)
            self.rows, self.sets = d["rows"], d["sets"]
            c = d["choices"]
            self.choices = {
                **({"recipe": Recipe(**c["recipe"])} if "recipe" in c else {}),
                **({"per_class": c["per_class"]} if "per_class" in c else {}),
                **({"train": TrainSet(**c["train"])} if "train" in c else {}),
                **{k: v for k, v in c.items() if k not in ("recipe", "per_class", "train")},
            }


def study_gates(st: Study) -> dict[str, Any]:
    """Gates (a)-(g) of the chosen setting on all of validation, each with its 95% interval and the rule that
    passes it: the interval must clear the bar (``Gates``), not the point estimate."""
    from sda.mini.data import lowpass_folder
    from sda.mini.gates import GATE_B_CORRUPTIONS

    g, sc, src = st.bench.gates, st.scores, st.source
    t, recipe = st.choices["train"], st.choices["recipe"]
    v, vp, vc, vcp = st.val, st.val_proj, st.valC, st.valC_proj
    src_v, src_vp = top1(sc(src, v), v.labels), top1(sc(src, vp), vp.labels)
    a = st.set_gates(t)["a"]
    b_rows = np.isin(np.array([f.split("/")[0] for f in vc.files]), GATE_B_CORRUPTIONS)
    raw_c, proj_c = top1(sc(src, vc), vc.labels)[b_rows], top1(sc(src, vcp), vc.labels)[b_rows]
    b = stats.bootstrap(stats.diff_pct, proj_c, raw_c, groups=vc.base_images[b_rows])
    c = stats.bootstrap(stats.diff_pct, src_v, src_vp, groups=v.base_images)
    oracle = st.out / "ft" / f"{Row('size', recipe, TrainSet(t.per_class, None)).name}.pth"
    or_vp = top1(sc(oracle, vp), vp.labels)
    d = stats.bootstrap(stats.share_recovered, src_v, src_vp, or_vp, groups=v.base_images)
    low = ImageSet.folder(
        f"val_lowpass_D{st.s.D}", lowpass_folder(v.root, st.data / f"{v.root.name}_lowpass_D{st.s.D}", st.s.D)
    )
    low_v = top1(sc(st.assets / "classifier_lowpass.pth", low), low.labels)
    e = stats.bootstrap(stats.ratio, low_v, src_v, groups=v.base_images)
    f = st.rows[Row("chosen", recipe, t).name]["f"]
    realism_ = st.set_gates(t)["g"]
    return {
        "a": {**a, "pass": bool(a["lo"] >= g.a_min_class), "rule": f"95% lower bound of top-1 >= {g.a_min_class}"},
        "b": {
            **_iv(b),
            "pass": bool(b["lo"] > 0),
            "rule": "projected - raw on noise/blur/pixelate val-C: interval above 0",
        },
        "c": {
            **_iv(c),
            "pass": bool(c["lo"] >= g.c_min_gap),
            "rule": f"clean - projected clean val: lower bound >= {g.c_min_gap}",
        },
        "d": {
            **_iv(d),
            "pass": bool(d["lo"] >= g.d_min_recovered),
            "rule": f"share of (c) the oracle wins back: lower bound >= {g.d_min_recovered}",
        },
        "e": {
            **_iv(e),
            "pass": bool(e["lo"] >= g.e_min_ratio),
            "rule": f"low-pass classifier / source: lower bound >= {g.e_min_ratio}",
        },
        "f": {
            **f,
            "pass": bool(f["lo"] > g.f_min_diff),
            "rule": f"fine-tuned - source on projected clean val: lower bound > {g.f_min_diff}",
        },
        "g": {
            **realism_,
            "pass": bool(realism_["fd"] <= g.g_max_fd_ratio * realism_["fd_real"]),
            "rule": f"FD <= {g.g_max_fd_ratio} x the real-vs-real FD",
        },
        "n": {"val": len(v.files), "valC": len(vc.files), "b": int(b_rows.sum())},
    }


def _iv(b: dict[str, float]) -> dict[str, float]:
    return {"value": b["value"], "lo": b["lo"], "hi": b["hi"]}


def _row_line(r: dict) -> str:
    f, d = r["f"], r["sda_minus_dda"]
    return (
        f"(f) ft {f['ft_projected']:.1f} vs source {f['source_projected']:.1f} = {f['value']:+.1f} "
        f"[{f['lo']:+.1f}, {f['hi']:+.1f}]; val-C SDA {r['sda']:.1f} DDA {r['dda']:.1f} = {d['value']:+.1f} "
        f"[{d['lo']:+.1f}, {d['hi']:+.1f}] ({r['seconds']['total']:.0f} s)"
    )


def realism(scores: Scores, source: Path, aligned: ImageSet, real: ImageSet, target: ImageSet) -> dict[str, Any]:
    """Gate (g): Frechet distance on the source classifier's penultimate features between an aligned synthetic
    set and projected real val, beside the same distance for as many projected real train images (the
    real-vs-real baseline), and a linear probe's accuracy at telling the synthetic from the real set."""
    fa, fr, ft = (scores(source, s, "features") for s in (aligned, real, target))
    n = min(len(fa), len(fr))  # the distance is biased by the sample size: compare at equal sizes
    rng = np.random.default_rng(0)
    fa, fr = fa[rng.permutation(len(fa))[:n]], fr[rng.permutation(len(fr))[:n]]
    return {
        "fd": stats.frechet_distance(fa, ft),
        "fd_real": stats.frechet_distance(fr, ft),
        "domain_acc": stats.domain_accuracy(fa, fr),
        "n": n,
    }


# ---------------------------------------------------------------------------------------------
# the command


@dataclass(frozen=True)
class StudyRun:
    """What ``mini/study.py`` runs."""

    benchmark: str = "glyphs32"
    out: Path | None = None  # default results/mini/<benchmark>/study
    data: Path | None = None  # default data/mini/<benchmark>
    assets: Path | None = None  # default: the bundled models (sda/mini/assets/<benchmark>)
    quick: bool = False
    threads: int = 2

    def __post_init__(self) -> None:
        check_run(self.threads, {"out": self.out, "data": self.data})


def open_study(run: StudyRun) -> Study:
    """The study's folders (absolute: the stage commands run from the repository), its plan and saved state."""
    from sda.mini.pipeline import ensure_data

    bench = get_benchmark(run.benchmark)
    out = (run.out or Path("results/mini") / bench.name / ("study-quick" if run.quick else "study")).resolve()
    data, assets = (run.data or bench.data).resolve(), (run.assets or bench.assets).resolve()
    plan = quick_plan(bench) if run.quick else glyphs32_plan(bench)
    st = Study(bench, plan, out, data, assets, run.threads, run.quick)
    ensure_data(bench, data)
    st.load()
    return st


def main_study(run: StudyRun) -> dict[str, Any]:
    """Every phase (resuming), the gates of the chosen setting, study.json and study.md."""
    st = open_study(run)
    st.prepare_validation()
    st.choose()
    gates = study_gates(st)
    st.save()
    record = json.loads((st.out / "study.json").read_text())
    record["gates"] = gates
    write_json(st.out / "study.json", record)
    text = study_markdown(record)
    write_text(st.out / "study.md", text)
    study_figure(record, None, st.out / "study.png", f"{st.bench.name}: the validation study (val-C)")
    print("\n" + text)
    return record


def study_markdown(record: dict[str, Any]) -> str:
    """The study's rows per phase and the chosen setting's gates, as Markdown tables."""
    lines = []
    for phase in ("strength", "size", "generator"):
        rows = {k: r for k, r in record["rows"].items() if r["phase"] == phase}
        if not rows:
            continue
        lines += [
            f"### {phase}",
            "",
            "| set | recipe | (f) ft - source on proj. clean val [95% CI] | ft on clean val | "
            "val-C SDA | val-C DDA | SDA - DDA [95% CI] | (a) | (g) FD / real FD | domain acc. | seconds |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows.values():
            t, f, d = r["train"], r["f"], r["sda_minus_dda"]
            name = TrainSet(**t).name
            sg = record["sets"].get(name, {})
            a = f"{sg['a']['top1']:.1f}" if sg else "-"
            g = f"{sg['g']['fd']:.2f} / {sg['g']['fd_real']:.2f}" if sg else "-"
            dom = f"{sg['g']['domain_acc']:.0f}%" if sg else "-"
            lines.append(
                f"| {name} | {Recipe(**r['recipe']).name} | {f['value']:+.1f} [{f['lo']:+.1f}, {f['hi']:+.1f}] | "
                f"{r['ft_clean']:.1f} | {r['sda']:.1f} | {r['dda']:.1f} | {d['value']:+.1f} [{d['lo']:+.1f}, "
                f"{d['hi']:+.1f}] | {a} | {g} | {dom} | {r['seconds']['total']:.0f} |"
            )
        lines.append("")
    lines += ["### chosen", "", "```", json.dumps(record["choices"], indent=1), "```", ""]
    if "gates" in record:
        lines += [
            "### gates of the chosen setting (validation)",
            "",
            "| gate | value | 95% CI | rule | pass |",
            "|---|---:|---|---|---|",
        ]
        for k in "abcdefg":
            gk = record["gates"][k]
            value = gk.get("value", gk.get("top1", gk.get("fd")))
            ci = f"[{gk['lo']:.2f}, {gk['hi']:.2f}]" if "lo" in gk else "-"
            value_s = f"{value:.2f}" if isinstance(value, float) else str(value)
            lines.append(f"| ({k}) | {value_s} | {ci} | {gk['rule']} | {'PASS' if gk['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"
