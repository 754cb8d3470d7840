"""Table 1 as reproduced: eval's per-model results merged into the paper's layout beside the published numbers.

Reads the ``<Model>_C.json``, ``<Model>_W.json`` (and ``<Model>_clean.json``, the clean-val check) that
``eval/evaluate.py --out`` writes, and gives, per model and set, every column present in the paper's order (Source,
MEMO, DiffPure, GDA, DDA, SDA; then the columns the paper does not have) with its 95% interval, the published
number, the difference and whether the published number lies inside the interval; and the paired differences
SDA - DDA and DDA - Source against the paper's. A mean over fewer than the 15 corruptions, or another severity,
is not the paper's number: it is shown with the published one but not compared.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sda.eval import published as P
from sda.eval.tables import DIFFERENCES
from sda.utils.errors import UserError
from sda.utils.io import check_writable_file, write_json, write_text
from sda.utils.options import option, parse_options

SETS = ("C", "W", "clean")
SET_TITLES = {
    "C": "ImageNet-C, severity 5, mean over 15 corruptions",
    "W": "ImageNet-W",
    "clean": "ImageNet val (clean): the source models",
}
PAPER_ORDER = ("Source", "MEMO", "DiffPure", "GDA", "DDA", "SDA")


@dataclass(frozen=True)
class ReportConfig:
    """Which results to merge and where the report goes."""

    results: str = option("results/eval", "folder of eval's <Model>_{C,W,clean}.json", names=("--results",))
    files: tuple[str, ...] = option((), "eval result .json files (instead of --results)", kind="positional", nargs="*")
    out: str | None = option(None, "report path without suffix; .md, .json, .csv (default: <results>/table1)")
    published_only: bool = option(False, "print the paper's numbers and exit", kind="switch", names=("--published",))

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> ReportConfig:
        return parse_options(cls, "eval/report.py", __doc__.split("\n\n")[0], argv)


@dataclass(frozen=True)
class Cell:
    """One number of the report: ours with its 95% interval beside the paper's."""

    model: str
    dataset: str  # C, W or clean
    column: str  # Source, DDA, SDA, ... or a paired difference "SDA - DDA"
    ours: float
    lo: float | None
    hi: float | None
    paper: float | None
    comparable: bool  # the same quantity as the paper's (all 15 corruptions at severity 5; the whole set)
    images: int
    subset: str | None

    @property
    def diff(self) -> float | None:
        return None if self.paper is None else self.ours - self.paper

    @property
    def inside(self) -> bool | None:
        """Whether the published number lies inside our interval (None when there is nothing to compare)."""
        if self.paper is None or not self.comparable or self.lo is None or self.hi is None:
            return None
        return self.lo <= self.paper <= self.hi

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "diff": self.diff, "inside": self.inside}


def model_name(record: dict[str, Any]) -> str:
    """The model a result belongs to: the eval config's name (configs/eval/<Model>.py)."""
    return Path(record["config"]).stem


def dataset_of(record: dict[str, Any]) -> str:
    return record["datatype"]


def load_records(cfg: ReportConfig) -> list[dict[str, Any]]:
    """The eval results named, or every ``*_{C,W,clean}.json`` in ``--results``."""
    if cfg.files:
        paths = [Path(f) for f in cfg.files]
    else:
        root = Path(cfg.results)
        if not root.is_dir():
            raise UserError(f"--results {root} is not a folder; run scripts/eval.sh first (it writes there)")
        paths = sorted(p for s in SETS for p in root.glob(f"*_{s}.json"))
        if not paths:
            raise UserError(f"no eval results (<Model>_C.json, _W.json, _clean.json) in {root}; run scripts/eval.sh")
    records = []
    for p in paths:
        try:
            rec = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read eval result {p} ({e}); rerun scripts/eval.sh for it") from e
        if not {"datatype", "config", "results", "methods"} <= set(rec):
            raise UserError(f"{p} is not an eval result (written by eval/evaluate.py --out)")
        rec["_path"] = str(p)
        records.append(rec)
    return records


def cells_of(record: dict[str, Any]) -> list[Cell]:
    """The report's numbers from one eval result."""
    model, ds = model_name(record), dataset_of(record)
    subset, images = record.get("subset"), int(record["images"])
    results, intervals = record["results"], record.get("intervals", {})
    if ds == "C":
        sevs = list(record.get("mean", {}))
        sev = str(P.SEVERITY) if str(P.SEVERITY) in sevs else (sevs[0] if sevs else None)
        if sev is None:
            return []
        keys = [k for k, e in results.items() if str(e["severity"]) == sev]
        comparable = sev == str(P.SEVERITY) and len(keys) == P.CORRUPTIONS
        values = record["mean"][sev]["top1"] if len(keys) > 1 else results[keys[0]]["top1"]
        iv = intervals.get(sev, {})
        images = sum(results[k]["n"] for k in keys)
    else:
        (entry,) = results.values()
        comparable, values, iv = True, entry["top1"], intervals.get("W", {})
        if ds == "clean" or not iv:
            iv = {m: {"lo": lo, "hi": hi} for m, (lo, hi) in (entry.get("top1_ci") or {}).items() if lo is not None}
    out = []
    for mode, label in record["methods"].items():
        if mode not in values or (ds == "clean" and mode != "first"):
            continue
        ci = iv.get(mode) or {}
        paper = P.published(ds, label, model)
        out.append(Cell(model, ds, label, values[mode], ci.get("lo"), ci.get("hi"), paper, comparable, images, subset))
    for name, a, b in DIFFERENCES:
        if name in iv and ds != "clean":
            la, lb = record["methods"][a], record["methods"][b]
            pa, pb = P.published(ds, la, model), P.published(ds, lb, model)
            paper = None if pa is None or pb is None else round(pa - pb, 1)
            d = iv[name]
            out.append(Cell(model, ds, f"{la} - {lb}", d["value"], d["lo"], d["hi"], paper, comparable, images, subset))
    return out


def _column_order(dataset: str, columns: set[str]) -> list[str]:
    paper = [c for c in PAPER_ORDER if c in columns or (c in P.TABLES.get(dataset, {}) and dataset != "clean")]
    rest = sorted(c for c in columns if c not in paper and " - " not in c)
    return paper + rest


def _fmt(cell: Cell | None, paper: float | None) -> str:
    if cell is None:
        return "-" if paper is None else f"- ({paper:.1f})"
    ci = "" if cell.lo is None else f" [{cell.lo:.1f}, {cell.hi:.1f}]"
    pub = "" if paper is None else f" ({paper:.1f}{'*' if cell.inside is False else ''})"
    return f"{cell.ours:.2f}{ci}{pub}"


def _models(cells: Sequence[Cell]) -> list[str]:
    present = {c.model for c in cells}
    return [m for m in P.MODELS if m in present] + sorted(present - set(P.MODELS))


def markdown(cells: Sequence[Cell], sources: Sequence[str]) -> str:
    """Table 1's layout (models x columns: ours [95% CI] (published)), then every comparison in long form."""
    lines = ["# Table 1, as reproduced", ""]
    lines += [
        "Each cell: our top-1 (%) [95% interval] (the paper's number; * when it lies outside our interval). "
        "Intervals: a bootstrap over base images for means (every corrupted version of an image moves with it), "
        "Wilson for a single set.",
        "",
    ]
    for ds in SETS:
        mine = [c for c in cells if c.dataset == ds and " - " not in c.column]
        if not mine:
            continue
        cols = _column_order(ds, {c.column for c in mine})
        lines += [f"## {SET_TITLES[ds]}", "", "| model | " + " | ".join(cols) + " | images | subset |"]
        lines.append("|---" * (len(cols) + 3) + "|")
        for m in _models(mine):
            row = {c.column: c for c in mine if c.model == m}
            any_cell = next(iter(row.values()))
            cov = "" if any_cell.comparable else " (not the paper's mean: see below)"
            vals = [_fmt(row.get(col), P.published(ds, col, m)) for col in cols]
            name = P.MODEL_NAMES.get(m, m)
            lines.append(
                f"| {name}{cov} | " + " | ".join(vals) + f" | {any_cell.images} | {any_cell.subset or 'all'} |"
            )
        lines.append("")
    diffs = [c for c in cells if " - " in c.column]
    if diffs:
        lines += ["## Paired differences (points)", "", "| model | set | difference | ours [95% CI] | paper | inside |"]
        lines.append("|---|---|---|---|---|---|")
        for c in diffs:
            lines.append(
                f"| {P.MODEL_NAMES.get(c.model, c.model)} | {c.dataset} | {c.column} | {c.ours:+.2f} "
                f"[{c.lo:+.2f}, {c.hi:+.2f}] | {_opt(c.paper, '+.1f')} | {_yes(c.inside)} |"
            )
        lines.append("")
    compared = [c for c in cells if c.paper is not None and " - " not in c.column]
    if compared:
        lines += [
            "## Against the paper",
            "",
            "| model | set | column | ours | 95% CI | paper | ours - paper | inside |",
        ]
        lines.append("|---|---|---|---|---|---|---|---|")
        for c in compared:
            ci = "-" if c.lo is None else f"[{c.lo:.2f}, {c.hi:.2f}]"
            lines.append(
                f"| {P.MODEL_NAMES.get(c.model, c.model)} | {c.dataset} | {c.column} | {c.ours:.2f} | {ci} | "
                f"{c.paper:.1f} | {c.diff:+.2f} | {_yes(c.inside)} |"
            )
        lines.append("")
    partial = sorted({(c.model, c.dataset) for c in cells if not c.comparable})
    if partial:
        lines.append(
            'Not compared ("n/a"): '
            + ", ".join(f"{P.MODEL_NAMES.get(m, m)} {d}" for m, d in partial)
            + ": the mean is not over the 15 corruptions at severity 5, so it is not the paper's quantity."
        )
        lines.append("")
    lines += ["Results read: " + ", ".join(f"`{s}`" for s in sources), ""]
    return "\n".join(lines)


def _opt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _yes(x: bool | None) -> str:
    return "n/a" if x is None else ("yes" if x else "no")


def csv_text(cells: Sequence[Cell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["model", "set", "column", "ours", "lo", "hi", "paper", "diff", "inside", "comparable", "images", "subset"]
    w.writerow(head)
    for c in cells:
        d = c.as_dict()
        row = [d["model"], d["dataset"], d["column"]] + [
            "" if d[k] is None else (f"{d[k]:.4f}" if isinstance(d[k], float) else d[k])
            for k in ("ours", "lo", "hi", "paper", "diff", "inside", "comparable", "images", "subset")
        ]
        w.writerow(row)
    return buf.getvalue()


def report(cfg: ReportConfig) -> dict[str, Any] | None:
    """Merge the results, write ``<out>.md/.json/.csv``, print the Markdown; the report as a dict."""
    if cfg.published_only:
        print(P.markdown(), end="")
        return None
    records = load_records(cfg)
    out = Path(cfg.out) if cfg.out else Path(cfg.results) / "table1"
    for suffix in (".md", ".json", ".csv"):
        check_writable_file(out.with_suffix(suffix), "--out")
    cells = [c for r in records for c in cells_of(r)]
    sources = [r["_path"] for r in records]
    text = markdown(cells, sources)
    result = {"cells": [c.as_dict() for c in cells], "sources": sources}
    write_text(out.with_suffix(".md"), text)
    write_json(out.with_suffix(".json"), result)
    write_text(out.with_suffix(".csv"), csv_text(cells))
    print(text, flush=True)
    print(f"report: {out.with_suffix('.md')}, {out.with_suffix('.json')}, {out.with_suffix('.csv')}", flush=True)
    return result
