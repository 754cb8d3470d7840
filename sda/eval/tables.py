"""Stage 4 (eval) reports: accuracies per subset and mean, paper-style Markdown tables and CSV rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from sda.eval.pairs import SET_NAMES, PairedImages, SubsetPairs
from sda.eval.scoring import TOPK
from sda.utils import stats

METHOD_NAMES = {
    "first": "Source",
    "second": "Projected",
    "sum": "DDA",
    "sda": "SDA",
    "diffpure": "DiffPure",
    "norm": "Test-time BN",
    "tent": "TENT",
    "memo": "MEMO",
}
ORIGINAL_ONLY = ("sda", "norm", "tent", "memo")  # columns whose model does not follow --single-model


# The paired differences reported beside the means, when both columns are present: (name, column a, column b).
DIFFERENCES = (("sda-sum", "sda", "sum"), ("sum-first", "sum", "first"))


def summarize(
    subsets: Sequence[SubsetPairs], dataset: PairedImages, merged: dict[str, np.ndarray], modes: Sequence[str]
) -> dict[str, Any]:
    """Per-subset top-1/top-5 accuracy (%) of every mode with a 95% Wilson interval on top-1, and per severity the
    mean over corruptions with the paired differences (SDA - DDA, DDA - Source), each with a 95% interval from a
    bootstrap over base images (all corrupted versions of a clean image resampled together)."""
    subset_of = np.array([si for si, _ in dataset.items], dtype=np.int64)[merged["index"]]
    results: dict[str, Any] = {}
    for si, s in enumerate(subsets):
        sel = subset_of == si
        n = int(sel.sum())
        entry = {"corruption": s.corruption, "severity": s.severity, "n": n, "counts": s.counts, "top1": {}, "top5": {}}
        entry["top1_ci"] = {}
        for m in modes:
            r = merged[f"rank/{m}"][sel]
            entry["top1"][m] = 100.0 * float((r == 0).mean())
            entry["top5"][m] = 100.0 * float((r < TOPK).mean())
            entry["top1_ci"][m] = list(stats.wilson(int((r == 0).sum()), n)) if n else None
        results[s.key] = entry
    means: dict[str, Any] = {}
    sevs = sorted({s.severity for s in subsets if s.severity is not None})
    for sev in sevs:
        keys = [s.key for s in subsets if s.severity == sev]
        means[str(sev)] = {
            t: {m: float(np.mean([results[k][t][m] for k in keys])) for m in modes} for t in ("top1", "top5")
        }
    group_of = _base_image_ids(dataset)[merged["index"]]
    intervals = {}
    for sev in sevs or [None]:
        cells = [si for si, s in enumerate(subsets) if s.severity == sev]
        intervals["W" if sev is None else str(sev)] = _mean_intervals(cells, subset_of, group_of, merged, modes)
    return {"results": results, "mean": means, "intervals": intervals}


def _base_image_ids(dataset: PairedImages) -> np.ndarray:
    """The base image of every dataset item as an integer id (the corrupted versions of one clean image share it)."""
    from sda.utils.subset import base_name

    names = [base_name(rel) for _, rel in dataset.items]
    index = {n: i for i, n in enumerate(sorted(set(names)))}
    return np.array([index[n] for n in names], dtype=np.int64)


def _mean_intervals(
    cells: Sequence[int],
    subset_of: np.ndarray,
    group_of: np.ndarray,
    merged: dict[str, np.ndarray],
    modes: Sequence[str],
) -> dict[str, dict[str, float]]:
    """The mean over ``cells`` of each mode's top-1 and the paired differences, with bootstrap intervals."""
    groups = int(group_of.max()) + 1 if len(group_of) else 0
    counts = np.zeros((len(cells), groups))
    sums = {m: np.zeros((len(cells), groups)) for m in modes}
    for c, si in enumerate(cells):
        sel = subset_of == si
        np.add.at(counts[c], group_of[sel], 1)
        for m in modes:
            np.add.at(sums[m][c], group_of[sel], (merged[f"rank/{m}"][sel] == 0).astype(np.float64))
    pairs = {name: (a, b) for name, a, b in DIFFERENCES if a in modes and b in modes}
    return stats.cell_mean_bootstrap(sums, counts, pairs)


def method_label(mode: str, single: str) -> str:
    if mode in ORIGINAL_ONLY or single == "original":
        return METHOD_NAMES.get(mode, mode)
    return f"{mode} ({single})"


def markdown_tables(
    summary: dict[str, Any], modes: Sequence[str], single: str, datatype: str, notes: dict[str, str] | None = None
) -> str:
    """Paper-style tables: one row per corruption and the mean, one column per method (and notes under them)."""
    heads = [method_label(m, single) for m in modes]
    results = summary["results"]
    intervals = summary.get("intervals", {})
    lines: list[str] = []
    for metric, title in (("top1", "top-1"), ("top5", "top-5")):
        if datatype != "C":
            name = SET_NAMES[datatype]
            groups = [(name, "W", [(k, name) for k in results], None)]
        else:
            groups = []
            for sev, mean in summary["mean"].items():
                rows = [(k, e["corruption"]) for k, e in results.items() if str(e["severity"]) == sev]
                groups.append((f"severity {sev}", sev, rows, mean))
        for name, group, rows, mean in groups:
            ci = " [95% CI]" if metric == "top1" else ""
            lines += [
                f"**{name}, {title} accuracy (%){ci}**",
                "",
                "| " + " | ".join(["corruption" if datatype == "C" else "set", *heads]) + " |",
                "|" + "---|" * (len(heads) + 1),
            ]
            for key, label in rows:
                e = results[key]
                cells = [_cell(e[metric][m], e.get("top1_ci", {}).get(m) if metric == "top1" else None) for m in modes]
                lines.append("| " + " | ".join([label, *cells]) + " |")
            iv = intervals.get(group, {})
            if mean is not None and len(rows) > 1:
                cells = [_cell(mean[metric][m], _lohi(iv.get(m)) if metric == "top1" else None) for m in modes]
                lines.append("| " + " | ".join(["mean", *cells]) + " |")
            lines.append("")
            if metric == "top1":
                for pair, a, b in DIFFERENCES:
                    if pair in iv:
                        d = iv[pair]
                        label = f"{METHOD_NAMES.get(a, a)} - {METHOD_NAMES.get(b, b)}"
                        lines.append(f"- {label}: {d['value']:+.2f} points [{d['lo']:+.2f}, {d['hi']:+.2f}] (paired)")
                lines.append("")
    lines += [f"- {METHOD_NAMES.get(m, m)}: {text}" for m, text in (notes or {}).items()]
    return "\n".join(lines)


def _cell(value: float, ci: Sequence[float] | None) -> str:
    return f"{value:.2f}" if ci is None else f"{value:.2f} [{ci[0]:.1f}, {ci[1]:.1f}]"


def _lohi(d: dict[str, float] | None) -> tuple[float, float] | None:
    return None if d is None else (d["lo"], d["hi"])


def csv_rows(summary: dict[str, Any], modes: Sequence[str], single: str, datatype: str) -> str:
    """One row per cell, mean and paired difference: top-1 with its 95% interval (Wilson per cell, bootstrap over
    base images for the means and differences), top-5, n."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["datatype", "corruption", "severity", "mode", "method", "top1", "top1_lo", "top1_hi", "top5", "n"])

    def f(x: float | None) -> str:
        return "" if x is None else f"{x:.4f}"

    for e in summary["results"].values():
        sev = "" if e["severity"] is None else e["severity"]
        for m in modes:
            lo, hi = (e.get("top1_ci") or {}).get(m) or (None, None)
            row = [datatype, e["corruption"], sev, m, method_label(m, single), f(e["top1"][m]), f(lo), f(hi)]
            w.writerow([*row, f(e["top5"][m]), e["n"]])
    intervals = summary.get("intervals", {})
    for sev, mean in summary["mean"].items():
        iv = intervals.get(sev, {})
        for m in modes:
            lo, hi = _lohi(iv.get(m)) or (None, None)
            row = [datatype, "mean", sev, m, method_label(m, single), f(mean["top1"][m]), f(lo), f(hi)]
            w.writerow([*row, f(mean["top5"][m]), ""])
        for pair, _, _ in DIFFERENCES:
            if pair in iv:
                d = iv[pair]
                w.writerow([datatype, "difference", sev, pair, pair, f(d["value"]), f(d["lo"]), f(d["hi"]), "", ""])
    return buf.getvalue()
