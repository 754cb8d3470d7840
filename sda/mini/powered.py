"""The powered test of SDA on a mini benchmark: the setting the validation study chose, committed with its
decision rule before the run (``sda/mini/configs/<benchmark>/powered.json``), on the target-test split.

    python mini/study.py --test               # -> results/mini/<benchmark>/powered/results.{json,md,png}

Design: severity 5; ``test_per_class`` images per class and corruption (140 per corruption for glyphs32),
rotated so that corruptions use different base images where the split allows (``rotated_c_subset``). The test
set is projected once, with ``test_projection_seed``, and shared by every seed, as the paper reuses DDA's one
projection of ImageNet-C (``null``: each seed projects its own, at five times the cost). For each seed, the
synthetic set is generated and projected (MoD), and the source fine-tuned on the aligned set (SDA), on the
raw set (SDA w/o MoD) and on as many projected real train images (Oracle, one projection of them);
BN-adapt re-estimates the source's BatchNorm statistics on the aligned set. Every column is scored per image
(``sda.mini.scoring``), and every number comes with a 95% interval from a two-stage bootstrap: seeds with
replacement (a random effect), then base images with replacement (all versions of a clean image together).

The rule (stated in ``powered.json`` and committed before the run) gives one of three outcomes:
*reproduced at this scale*, *no effect at this scale* or *inconclusive*.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sda.mini.commands import bn_adapt_config, build_c_config, command
from sda.mini.data import rotated_c_subset, stratified_subset
from sda.mini.plan import C_SYN
from sda.mini.procs import complete_manifest
from sda.mini.report import study_figure
from sda.mini.scoring import ImageSet, correct
from sda.mini.study import PINNED_THREADS, SEVERITY, Recipe, Row, Study, TrainSet, read_study
from sda.utils import stats
from sda.utils.errors import UserError
from sda.utils.io import write_json, write_text
from sda.utils.layout import CORRUPTIONS

POWERED = "powered-1"
# Each column: (mode of sda.eval.ensemble, model scoring the projected image); None: the source model.
COLUMNS: dict[str, tuple[str, str | None]] = {
    "source": ("first", None),
    "projected": ("second", None),
    "dda": ("sum", None),
    "sda": ("sda", "ft"),
    "sda_nomod": ("sda", "nomod"),
    "bn_adapt": ("sda", "bn_adapt"),
    "oracle": ("sda", "oracle"),
}
DIFFERENCES = (("sda", "dda"), ("sda", "bn_adapt"), ("sda", "sda_nomod"), ("dda", "source"), ("oracle", "sda"))


@dataclass(frozen=True)
class PoweredPlan:
    """The committed setting of the powered test (``sda/mini/configs/<benchmark>/powered.json``)."""

    recipe: Recipe
    train: TrainSet  # its seed is replaced by each test seed
    seeds: tuple[int, ...]
    test_per_class: int
    f_passed_on_val: bool  # gate (f) of the chosen setting, from the study
    rule: str
    test_projection_seed: int | None  # the one projection of the test set; None: one per seed

    @classmethod
    def load(cls, path: Path) -> PoweredPlan:
        if not path.is_file():
            raise UserError(f"{path} not found: commit the chosen setting and the rule first (README, 'powered test')")
        d = json.loads(path.read_text())
        return cls(
            recipe=Recipe(**d["recipe"]),
            train=TrainSet(**d["train"]),
            seeds=tuple(d["seeds"]),
            test_per_class=d["test_per_class"],
            f_passed_on_val=d["f_passed_on_val"],
            rule=d["rule"],
            test_projection_seed=d["test_projection_seed"],
        )


def verdict(diffs: dict[str, dict[str, float]], f_passed: bool) -> dict[str, Any]:
    """The pre-registered rule. Reproduced: gate (f) passed on val, SDA - DDA >= +1.0 with its interval above 0,
    and SDA not below BN-adapt or SDA w/o MoD (each difference's interval reaches 0 or above). No effect: the
    upper bound of SDA - DDA is below +1. Otherwise inconclusive."""
    d = diffs["sda-dda"]
    not_below = all(diffs[k]["hi"] >= 0 for k in ("sda-bn_adapt", "sda-sda_nomod"))
    if f_passed and d["value"] >= 1.0 and d["lo"] > 0 and not_below:
        status = "reproduced at this scale"
    elif d["hi"] < 1.0:
        status = "no effect at this scale"
    else:
        status = "inconclusive"
    conditions = {"f_passed_on_val": f_passed, "sda_minus_dda_ge_1": d["value"] >= 1.0, "interval_above_0": d["lo"] > 0}
    conditions.update(sda_not_below_others=not_below, upper_bound_below_1=d["hi"] < 1.0)
    conditions = {k: bool(v) for k, v in conditions.items()}  # plain JSON booleans, not numpy's
    return {"status": status, "conditions": conditions}


class PoweredTest:
    """One folder (``<study out>/../powered``) holding every seed's sets, models, scores and the outcomes."""

    def __init__(self, study: Study, plan: PoweredPlan, out: Path):
        self.st, self.plan, self.out = study, plan, out
        n = plan.train.per_class  # each draw, and the oracle's projected real images, at the plan's size
        one_size = replace(study.plan, sizes=(n,), max_real_per_class=n)
        self.work = Study(study.bench, one_size, out, study.data, study.assets, study.threads, study.quick)

    @property
    def test_c(self) -> ImageSet:
        return ImageSet.folder("testC", self.out / "testC")

    def prepare_test(self) -> None:
        """The whole test split's "-C" set at severity 5 (once), then the rotated subset of this plan."""
        test, full = self.st.data / "test", self.st.data / "test-C-full"
        if self.st.quick:  # CI: a few base images, the same code
            n = self.plan.test_per_class
            test, full = stratified_subset(test, self.st.data / f"test{n}", n), self.st.data / f"test{n}-C-full"
        self.work.run("data", "build_test_c", command(build_c_config(test, full, SEVERITY)))
        rotated_c_subset(full, self.out / "testC", self.plan.test_per_class, SEVERITY)

    def seed_outcomes(self, seed: int) -> dict[str, np.ndarray]:
        """Per-image correctness (I,) of every column for one seed (cached in ``seed<k>/outcomes.npz``)."""
        w, out = self.work, self.out / f"seed{seed}"
        path = out / "outcomes.npz"
        if path.is_file():
            return dict(np.load(path))
        t0, seconds = time.time(), {}
        p_seed = seed if self.plan.test_projection_seed is None else self.plan.test_projection_seed
        proj_root = self.out / f"testC_proj_s{p_seed}"
        manifests = [proj_root / C_SYN / c / str(SEVERITY) / "align_manifest.json" for c in CORRUPTIONS]
        if not all(map(complete_manifest, manifests)):
            w.run.parallel("align", w.project(f"align_test_s{p_seed}", self.out / "testC", "C", proj_root, p_seed))
            seconds["project_test"] = round(time.time() - t0, 1)
        t = replace(self.plan.train, seed=seed)
        seconds.update(w.make_draw(t))
        seconds.update(w.make_real())
        t1 = time.time()
        row = Row("test", self.plan.recipe, t)
        models = {
            "ft": w.finetune(row, w.train_dir(t), seed=seed),
            "nomod": w.finetune(row, w.train_dir(t, aligned=False), tag="-nomod", seed=seed),
            "oracle": w.finetune(row, w.train_dir(TrainSet(t.per_class, None)), tag="-oracle", seed=seed),
            "bn_adapt": self.bn_adapt(t, out / "bn_adapt.pth"),
        }
        seconds["finetune"] = round(time.time() - t1, 1)
        outcomes = self.score(models, self.test_c.moved(proj_root.name, proj_root / C_SYN))
        np.savez(path, **outcomes)
        write_json(out / "seconds.json", {**seconds, "total": round(time.time() - t0, 1)})
        return outcomes

    def bn_adapt(self, t: TrainSet, path: Path) -> Path:
        if not path.is_file():
            cmd = command(bn_adapt_config(self.work.source, self.work.train_dir(t), path))
            self.work.run.parallel("finetune", [(path.parent.name + "_bn_adapt", cmd)], threads_per_job=PINNED_THREADS)
        return path

    def score(self, models: dict[str, Path], proj: ImageSet) -> dict[str, np.ndarray]:
        sc, src, raw = self.work.scores, self.work.source, self.test_c
        s1, s2 = sc(src, raw), sc(src, proj)
        out = {}
        for name, (mode, model) in COLUMNS.items():
            out[name] = correct(mode, s1, s2 if model is None else sc(models[model], proj), raw.labels)
        for m in models.values():
            sc.forget(m)
        return out

    def run(self) -> dict[str, Any]:
        self.prepare_test()
        per_seed = [self.seed_outcomes(k) for k in self.plan.seeds]
        return self.report(per_seed)

    def report(self, per_seed: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        groups = self.test_c.base_images
        arr = {c: np.stack([o[c] for o in per_seed]) for c in COLUMNS}  # (S, I) each
        columns = {c: _iv(stats.bootstrap(stats.mean_pct, arr[c], groups=groups)) for c in COLUMNS}
        diffs = {
            f"{a}-{b}": _iv(stats.bootstrap(stats.diff_pct, arr[a], arr[b], groups=groups)) for a, b in DIFFERENCES
        }
        corr = np.array([f.split("/")[0] for f in self.test_c.files])
        per_corruption = {c: {k: stats.mean_pct(arr[k][:, corr == c]) for k in COLUMNS} for c in CORRUPTIONS}
        seconds = [json.loads((self.out / f"seed{k}" / "seconds.json").read_text()) for k in self.plan.seeds]
        record = {
            "powered": POWERED,
            "settings": {
                "recipe": asdict(self.plan.recipe),
                "train": asdict(self.plan.train),
                "test_projection_seed": self.plan.test_projection_seed,
            },
            "seeds": list(self.plan.seeds),
            "n_per_corruption": int((corr == CORRUPTIONS[0]).sum()),
            "n_images": len(corr),
            "n_base_images": len(set(groups)),
            "columns": columns,
            "differences": diffs,
            "per_corruption": per_corruption,
            "per_seed_means": {
                k: {c: stats.mean_pct(o[c]) for c in COLUMNS} for k, o in zip(self.plan.seeds, per_seed, strict=True)
            },
            "rule": self.plan.rule,
            "verdict": verdict(diffs, self.plan.f_passed_on_val),
            "seconds_per_seed": seconds,
        }
        study = read_study(self.st.out / "study.json")
        record["study"] = {k: study[k] for k in ("rows", "sets", "choices", "gates") if k in study}
        write_json(self.out / "results.json", record)
        write_text(self.out / "results.md", powered_markdown(record))
        title = f"{self.st.bench.name}: the validation study (val-C) and the powered test (test split)"
        study_figure(record["study"], record, self.out / "results.png", title)
        return record


def _iv(b: dict[str, float]) -> dict[str, float]:
    return {"value": b["value"], "lo": b["lo"], "hi": b["hi"]}


def powered_markdown(r: dict[str, Any]) -> str:
    titles = {
        "source": "Source",
        "projected": "Projected only",
        "dda": "DDA",
        "sda": "**SDA**",
        "sda_nomod": "SDA w/o MoD",
    }
    titles.update(bn_adapt="BN-adapt", oracle="Oracle")
    lines = [
        f"Top-1 (%) on the target-test split, severity 5, {r['n_per_corruption']} images per corruption "
        f"({r['n_images']} scored, {r['n_base_images']} base images), seeds {','.join(map(str, r['seeds']))}; "
        "95% intervals from a bootstrap over seeds and base images.",
        "",
        "| column | top-1 [95% CI] |",
        "|---|---:|",
    ]
    for k, v in r["columns"].items():
        lines.append(f"| {titles[k]} | {v['value']:.1f} [{v['lo']:.1f}, {v['hi']:.1f}] |")
    lines += ["", "| difference | points [95% CI] |", "|---|---:|"]
    for k, v in r["differences"].items():
        a, b = k.split("-")
        lines.append(f"| {titles[a]} - {titles[b]} | {v['value']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}] |")
    v = r["verdict"]
    lines += [
        "",
        f"Rule (committed before the run): {r['rule']}",
        "",
        f"**Verdict: {v['status']}** ({v['conditions']})",
        "",
    ]
    return "\n".join(lines)


def main_powered(st: Study) -> dict[str, Any]:
    """The powered test with the committed plan of ``st``'s benchmark, in ``<study out>/../powered``."""
    plan = PoweredPlan.load(st.bench.configs / ("powered-quick.json" if st.quick else "powered.json"))
    out = st.out.parent / ("powered-quick" if st.quick else "powered")
    record = PoweredTest(st, plan, out).run()
    print("\n" + powered_markdown(record))
    return record
