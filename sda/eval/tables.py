"""Stage 4 (eval) reports: accuracies per subset and mean, paper-style Markdown tables and CSV rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from sda.eval.pairs import PairedImages, SubsetPairs
from sda.eval.scoring import TOPK

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


def summarize(
    subsets: Sequence[SubsetPairs], dataset: PairedImages, merged: dict[str, np.ndarray], modes: Sequence[str]
) -> dict[str, Any]:
    """Per-subset top-1/top-5 accuracy (%) of every mode and the mean over corruptions per severity."""
    subset_of = np.array([si for si, _ in dataset.items], dtype=np.int64)[merged["index"]]
    results: dict[str, Any] = {}
    for si, s in enumerate(subsets):
        sel = subset_of == si
        n = int(sel.sum())
        entry = {"corruption": s.corruption, "severity": s.severity, "n": n, "counts": s.counts, "top1": {}, "top5": {}}
        for m in modes:
            r = merged[f"rank/{m}"][sel]
            entry["top1"][m] = 100.0 * float((r == 0).mean())
            entry["top5"][m] = 100.0 * float((r < TOPK).mean())
        results[s.key] = entry
    means: dict[str, Any] = {}
    sevs = sorted({s.severity for s in subsets if s.severity is not None})
    for sev in sevs:
        keys = [s.key for s in subsets if s.severity == sev]
        means[str(sev)] = {
            t: {m: float(np.mean([results[k][t][m] for k in keys])) for m in modes} for t in ("top1", "top5")
        }
    return {"results": results, "mean": means}


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
    lines: list[str] = []
    for metric, title in (("top1", "top-1"), ("top5", "top-5")):
        if datatype == "W":
            groups = [("ImageNet-W", [(k, "ImageNet-W") for k in results], None)]
        else:
            groups = []
            for sev, mean in summary["mean"].items():
                rows = [(k, e["corruption"]) for k, e in results.items() if str(e["severity"]) == sev]
                groups.append((f"severity {sev}", rows, mean))
        for name, rows, mean in groups:
            lines += [
                f"**{name}, {title} accuracy (%)**",
                "",
                "| " + " | ".join(["corruption" if datatype == "C" else "set", *heads]) + " |",
                "|" + "---|" * (len(heads) + 1),
            ]
            for key, label in rows:
                lines.append("| " + " | ".join([label] + [f"{results[key][metric][m]:.2f}" for m in modes]) + " |")
            if mean is not None and len(rows) > 1:
                lines.append("| " + " | ".join(["mean"] + [f"{mean[metric][m]:.2f}" for m in modes]) + " |")
            lines.append("")
    lines += [f"- {METHOD_NAMES.get(m, m)}: {text}" for m, text in (notes or {}).items()]
    return "\n".join(lines)


def csv_rows(summary: dict[str, Any], modes: Sequence[str], single: str, datatype: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["datatype", "corruption", "severity", "mode", "method", "top1", "top5", "n"])
    for e in summary["results"].values():
        for m in modes:
            w.writerow(
                [
                    datatype,
                    e["corruption"],
                    "" if e["severity"] is None else e["severity"],
                    m,
                    method_label(m, single),
                    f"{e['top1'][m]:.4f}",
                    f"{e['top5'][m]:.4f}",
                    e["n"],
                ]
            )
    for sev, mean in summary["mean"].items():
        for m in modes:
            w.writerow(
                [
                    datatype,
                    "mean",
                    sev,
                    m,
                    method_label(m, single),
                    f"{mean['top1'][m]:.4f}",
                    f"{mean['top5'][m]:.4f}",
                    "",
                ]
            )
    return buf.getvalue()
