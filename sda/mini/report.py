"""Tables and figures of the mini benchmark: per-seed results, 3-seed aggregates,
a bar chart per corruption and method, and an image grid."""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sda.utils.images import tile_grid
from sda.utils.io import atomic_write, load_rgb, save_image

# Column order of the paper-style table: (results.json key, column title).
METHODS: list[tuple[str, str]] = [
    ("source", "Source"),
    ("projected", "Projected only"),
    ("dda", "DDA (sum)"),
    ("sda", "SDA"),
    ("best_ensemble", "Best conf./entropy ens."),  # the mode chosen on validation is added
    ("bn_adapt", "BN-adapt (control)"),
]


def method_columns(results: dict) -> list[tuple[str, str]]:
    cols = [(k, t) for k, t in METHODS if k in results["methods"]]
    mode = results.get("best_ensemble_mode")
    return [(k, f"{t} ({mode})" if k == "best_ensemble" and mode else t) for k, t in cols]


def markdown_table(results: dict, spread: dict | None = None) -> str:
    """Rows: corruptions then the mean; columns: methods. ``spread`` adds ``± std`` per cell."""
    cols = method_columns(results)
    rows = [c for c in results["methods"]["source"] if c != "mean"] + ["mean"]
    lines = ["| corruption | " + " | ".join(t for _, t in cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = results["methods"][k][r]
            s = f"{v:.1f}"
            if spread is not None:
                s += f" ± {spread[k][r]:.1f}"
            cells.append(f"**{s}**" if r == "mean" else s)
        name = "**mean**" if r == "mean" else r
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def aggregate(per_seed: Sequence[dict]) -> tuple[dict, dict]:
    """Mean and (sample) standard deviation of every cell over seeds."""
    first = per_seed[0]
    # keep what all seeds share (benchmark, settings, ...); per-seed details stay in the seed folders
    mean: dict = {k: v for k, v in first.items() if k != "methods" and all(r.get(k) == v for r in per_seed)}
    mean["methods"], std = {}, {}
    for m, cells in first["methods"].items():
        mean["methods"][m], std[m] = {}, {}
        for c in cells:
            vals = [r["methods"][m][c] for r in per_seed]
            mean["methods"][m][c] = statistics.fmean(vals)
            std[m][c] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    for key in ("synthetic_accuracy", "seconds"):
        if all(key in r for r in per_seed):
            mean[key] = statistics.fmean(r[key] for r in per_seed)
    mean["seeds"] = [r.get("seed") for r in per_seed]
    return mean, std


def bar_chart(results: dict, path: str | Path, title: str) -> None:
    """Grouped bars: one group per corruption (and the mean), one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = method_columns(results)
    rows = [c for c in results["methods"]["source"] if c != "mean"] + ["mean"]
    x = np.arange(len(rows))  # (R,)
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(10, len(rows) * 0.9), 4.5))
    for i, (k, t) in enumerate(cols):
        ax.bar(x + (i - (len(cols) - 1) / 2) * width, [results["methods"][k][r] for r in rows], width, label=t)
    ax.set_xticks(x, rows, rotation=45, ha="right")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, pad=28)
    ax.legend(fontsize=8, ncols=len(cols), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def image_grid(rows: Sequence[Sequence[str | Path]], path: str | Path, cell: int = 64, pad: int = 2) -> None:
    """A grid PNG: each row a list of image files, upscaled (nearest) to ``cell`` pixels."""
    grid = tile_grid([[load_rgb(f) for f in row] for row in rows], pad=pad, cell=cell)
    save_image(grid, path, format="PNG")
