"""Tables, figures and the verdict of a mini benchmark: per-seed results, multi-seed aggregates (mean ± std),
a bar chart per corruption and method with the sub-means, and labelled image grids."""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sda.utils.images import labelled_grid
from sda.utils.io import atomic_write, load_rgb, save_image
from sda.utils.layout import CORRUPTIONS

# Column order of the paper-style table: (results.json key, column title).
METHODS: list[tuple[str, str]] = [
    ("source", "Source"),
    ("projected", "Projected only"),
    ("dda", "DDA (sum)"),
    ("diffpure", "DiffPure"),
    ("sda", "SDA"),
    ("sda_nomod", "SDA w/o MoD"),
    ("best_ensemble", "Best conf./entropy ens."),  # the mode chosen on validation is added
    ("bn_adapt", "BN-adapt (aligned syn.)"),
    ("test_time_bn", "Test-time BN"),
    ("tent", "TENT"),
    ("memo", "MEMO"),
    ("oracle", "Oracle (ft. on proj. real)"),
]
# Sub-means over corruption families: what the projection can undo (high-frequency damage) and what it cannot
# (damage inside the band the low-pass guidance keeps).
SUB_MEANS: dict[str, tuple[str, ...]] = {
    "recoverable": (*CORRUPTIONS[:7], "elastic_transform", "pixelate", "jpeg_compression"),
    "low_frequency": ("snow", "frost", "fog", "brightness", "contrast"),
}
SUMMARY_ROWS = ("mean", *SUB_MEANS)


def with_means(cells: dict[str, float]) -> dict[str, float]:
    """Per-corruption cells plus their mean and each sub-mean whose corruptions are all present."""
    out = dict(cells)
    out["mean"] = statistics.fmean(cells.values())
    for name, members in SUB_MEANS.items():
        if all(m in cells for m in members):
            out[name] = statistics.fmean(cells[m] for m in members)
    return out


def method_columns(table: dict[str, dict], mode: str | None = None) -> list[tuple[str, str]]:
    cols = [(k, t) for k, t in METHODS if k in table]
    return [(k, f"{t} ({mode})" if k == "best_ensemble" and mode else t) for k, t in cols]


def table_rows(table: dict[str, dict]) -> list[str]:
    first = next(iter(table.values()))
    return [c for c in first if c not in SUMMARY_ROWS] + [r for r in SUMMARY_ROWS if r in first]


def markdown_table(results: dict, spread: dict | None = None, severity: str | None = None) -> str:
    """Rows: corruptions, then the mean and sub-means (bold); columns: methods. ``spread`` adds ``± std``.

    ``severity``: one of ``results["tables"]``; default the main table ``results["methods"]``.
    """
    table = results["methods"] if severity is None else results["tables"][severity]
    std = None if spread is None else (spread["methods"] if severity is None else spread["tables"][severity])
    cols = method_columns(table, results.get("best_ensemble_mode"))
    lines = ["| corruption | " + " | ".join(t for _, t in cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in table_rows(table):
        cells = []
        for k, _ in cols:
            s = f"{table[k][r]:.1f}" + (f" ± {std[k][r]:.1f}" if std is not None else "")
            cells.append(f"**{s}**" if r in SUMMARY_ROWS else s)
        name = f"**{r.replace('_', '-')}**" if r in SUMMARY_ROWS else r
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_std(tables: Sequence[dict[str, dict]]) -> tuple[dict, dict]:
    mean: dict = {}
    std: dict = {}
    for m, cells in tables[0].items():
        mean[m], std[m] = {}, {}
        for c in cells:
            vals = [t[m][c] for t in tables]
            mean[m][c] = statistics.fmean(vals)
            std[m][c] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return mean, std


def aggregate(per_seed: Sequence[dict]) -> tuple[dict, dict]:
    """Mean and (sample) standard deviation of every cell over seeds: ``(summary, {"methods", "tables"})``."""
    first = per_seed[0]
    # keep what all seeds share (benchmark, settings, ...); per-seed details stay in the seed folders
    skip = ("methods", "tables")
    mean: dict = {k: v for k, v in first.items() if k not in skip and all(r.get(k) == v for r in per_seed)}
    spread: dict = {}
    mean["methods"], spread["methods"] = _mean_std([r["methods"] for r in per_seed])
    if all("tables" in r for r in per_seed):
        mean["tables"], spread["tables"] = {}, {}
        for sev in first["tables"]:
            mean["tables"][sev], spread["tables"][sev] = _mean_std([r["tables"][sev] for r in per_seed])
    for key in ("synthetic_accuracy", "seconds"):
        if all(key in r for r in per_seed):
            mean[key] = statistics.fmean(r[key] for r in per_seed)
    mean["seeds"] = [r.get("seed") for r in per_seed]
    return mean, spread


def verdict(per_seed: Sequence[dict], premise: bool) -> dict[str, Any]:
    """The README's rule: SDA's effect counts as reproduced at this scale only if the premise gates (c)-(e)
    pass and SDA - DDA > max(1 point, 2 x the seed std) and SDA beats SDA without MoD and BN-adapt (means).

    The seed std is the largest of the per-seed standard deviations of SDA's mean, DDA's mean and their
    difference (0 with one seed, which the verdict says).
    """
    means = {k: [r["methods"][k]["mean"] for r in per_seed] for k in ("sda", "dda", "sda_nomod", "bn_adapt")}
    diffs = [s - d for s, d in zip(means["sda"], means["dda"], strict=True)]

    def sd(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    seed_std = max(sd(means["sda"]), sd(means["dda"]), sd(diffs))
    sda = statistics.fmean(means["sda"])
    out: dict[str, Any] = {
        "seeds": len(per_seed),
        "sda_minus_dda": statistics.fmean(diffs),
        "seed_std": seed_std,
        "threshold": max(1.0, 2.0 * seed_std),
        "sda_minus_sda_nomod": sda - statistics.fmean(means["sda_nomod"]),
        "sda_minus_bn_adapt": sda - statistics.fmean(means["bn_adapt"]),
        "premise": premise,
    }
    out["conditions"] = {
        "sda_minus_dda_above_threshold": bool(out["sda_minus_dda"] > out["threshold"]),
        "sda_beats_sda_nomod": bool(out["sda_minus_sda_nomod"] > 0),
        "sda_beats_bn_adapt": bool(out["sda_minus_bn_adapt"] > 0),
    }
    if not premise:
        out["status"] = "premise absent"
    elif all(out["conditions"].values()):
        out["status"] = "reproduced at this scale"
    else:
        out["status"] = "not reproduced"
    return out


def verdict_line(v: dict[str, Any]) -> str:
    c = v["conditions"]
    seeds = f"{v['seeds']} seeds" if v["seeds"] > 1 else "1 seed: no seed spread"
    return (
        f"verdict: {v['status'].upper()} ({seeds}; premise gates c-e {'pass' if v['premise'] else 'fail'}): "
        f"SDA - DDA {v['sda_minus_dda']:+.1f} vs threshold {v['threshold']:.1f} "
        f"[{'yes' if c['sda_minus_dda_above_threshold'] else 'no'}], "
        f"SDA - SDA w/o MoD {v['sda_minus_sda_nomod']:+.1f} [{'yes' if c['sda_beats_sda_nomod'] else 'no'}], "
        f"SDA - BN-adapt {v['sda_minus_bn_adapt']:+.1f} [{'yes' if c['sda_beats_bn_adapt'] else 'no'}]"
    )


def bar_chart(results: dict, path: str | Path, title: str) -> None:
    """Grouped bars: one group per corruption, then the mean and sub-means; one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results["methods"]
    cols = method_columns(table, results.get("best_ensemble_mode"))
    rows = table_rows(table)
    x = np.arange(len(rows), dtype=float)  # (R,)
    x[len(rows) - sum(r in SUMMARY_ROWS for r in rows) :] += 0.6  # a gap before the summary groups
    width = 0.85 / len(cols)
    fig, ax = plt.subplots(figsize=(min(24, max(10, 2 + 0.1 * len(rows) * len(cols))), 5.5))
    cmap = plt.get_cmap("tab20")
    for i, (k, t) in enumerate(cols):
        vals = [table[k][r] for r in rows]
        ax.bar(x + (i - (len(cols) - 1) / 2) * width, vals, width, label=t, color=cmap(i % 20))
    ax.set_xticks(x, [r.replace("_", " ") if r not in SUMMARY_ROWS else f"[{r.replace('_', '-')}]" for r in rows])
    ax.tick_params(axis="x", rotation=40)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")
    ax.set_xlabel("corruption (then the mean and the sub-means)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, pad=40)
    ax.legend(fontsize=8, ncols=min(6, len(cols)), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> None:
    """A matplotlib figure as a PNG (100 dpi, tight layout), written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def image_grid(
    rows: Sequence[Sequence[str | Path]],
    path: str | Path,
    row_labels: Sequence[str],
    groups: Sequence[tuple[str, int]],
    cell: int = 64,
    pad: int = 2,
) -> None:
    """A labelled grid PNG: each row a list of image files, upscaled (nearest) to ``cell`` pixels, a label
    left of every row and a header over every column group (``[(title, columns), ...]``)."""
    grid = labelled_grid([[load_rgb(f) for f in row] for row in rows], row_labels, groups, cell=cell, pad=pad)
    save_image(grid, path, format="PNG")


def study_figure(study: dict[str, Any], powered: dict[str, Any] | None, path: str | Path, title: str) -> None:
    """SDA - DDA (points, 95% interval) on corrupted validation images against the synthetic set size and
    against the realism distance of gate (g), with the oracle (projected real images of the same size) as a line
    and the powered test's result at the chosen setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    recipe = study["choices"]["recipe"]
    rows = [r for r in study["rows"].values() if r["recipe"] == recipe]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))

    def errorbar(ax, xs, rs, **kw):
        ys = [r["sda_minus_dda"]["value"] for r in rs]
        err = [[y - r["sda_minus_dda"]["lo"] for y, r in zip(ys, rs, strict=True)],
               [r["sda_minus_dda"]["hi"] - y for y, r in zip(ys, rs, strict=True)]]  # fmt: skip
        ax.errorbar(xs, ys, yerr=err, capsize=4, marker="o", **kw)

    def draw(r: dict[str, Any]) -> tuple:
        return tuple(r["train"][k] for k in ("generator", "cfg_scale", "seed"))

    # the size phase's sets, and the same draw at other sizes (the smallest was phase 1's row)
    draws = {draw(r) for r in rows if r["phase"] == "size"}
    size = sorted((r for r in rows if draw(r) in draws), key=lambda r: r["train"]["per_class"])
    syn = [r for r in size if r["train"]["generator"] is not None]
    real = [r for r in size if r["train"]["generator"] is None]
    scale = f", guidance {syn[0]['train']['cfg_scale']:g}" if syn else ""
    errorbar(ax1, [r["train"]["per_class"] for r in syn], syn, label=f"SDA: aligned synthetic set{scale} (val-C)")
    errorbar(
        ax1, [r["train"]["per_class"] for r in real], real, linestyle="--", label="Oracle: projected real set (val-C)"
    )
    if powered is not None:
        d, n = powered["differences"]["sda-dda"], powered["settings"]["train"]["per_class"]
        err = [[d["value"] - d["lo"]], [d["hi"] - d["value"]]]
        style = dict(capsize=5, marker="*", markersize=14, color="black", linestyle="none")
        ax1.errorbar([n], [d["value"]], yerr=err, label="SDA, powered test (test split)", **style)
    ax1.set_xscale("log")
    ax1.set_xticks([r["train"]["per_class"] for r in syn], [str(r["train"]["per_class"]) for r in syn])
    ax1.xaxis.set_minor_formatter(NullFormatter())
    ax1.set_xlabel("fine-tuning images per class")
    ax1.set_ylabel("SDA - DDA, top-1 points (95% interval)")
    ax1.set_title("against the synthetic set size")
    gen = [r for r in rows if r["phase"] in ("generator", "size") and r["train"]["generator"] is not None]
    sets = study["sets"]
    named = [(r, sets[r["set"]]["g"]) for r in gen if r["set"] in sets]
    errorbar(ax2, [g["fd"] for _, g in named], [r for r, _ in named], linestyle="none", label="synthetic sets (val-C)")
    for i, (r, g) in enumerate(sorted(named, key=lambda n: n[1]["fd"])):
        ax2.annotate(r["set"].removeprefix("syn-"), (g["fd"], r["sda_minus_dda"]["value"]), fontsize=7,
                     xytext=(5, 12 * (i % 3) - 12), textcoords="offset points")  # fmt: skip
    if named:
        ax2.axvline(named[0][1]["fd_real"], color="grey", linestyle=":", label="real-vs-real distance")
    chosen = study["choices"].get("per_class")
    for r in (r for r in real if r["train"]["per_class"] == chosen):
        ax2.axhline(r["sda_minus_dda"]["value"], color="C1", linestyle="--", label=f"Oracle ({r['set']}, val-C)")
    ax2.set_xscale("log")
    ax2.xaxis.set_major_formatter(ScalarFormatter())
    ax2.set_xlabel("gate (g): Frechet distance to projected real val (source features)")
    ax2.set_ylabel("SDA - DDA, top-1 points (95% interval)")
    ax2.set_title("against the realism of the synthetic set")
    for ax in (ax1, ax2):
        ax.axhline(0, color="black", linewidth=0.8)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)
