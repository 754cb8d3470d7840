"""How machine-stable the mini study's fine-tuned columns are: the chosen row of the validation study
(``mini/study.py``, run first) fine-tuned again under other CPU settings, and scored like the study's rows.

    python benchmarks/mini_stability.py      # -> results/mini/<benchmark>/study/stability/stability.{json,md}

Variants: the study's own model (this machine's best instruction set, one thread: the study pins fine-tunes to
one thread); ``ATEN_CPU_CAPABILITY=default`` (no vector instructions, as on a CPU without AVX2 or AVX-512); two
threads. Each is compared with the study's model: the largest weight difference, the share of val-C images on
which the fine-tuned model's prediction changes, and gate (f) and SDA - DDA on validation with 95% intervals.
A column whose value moves by more than its rounding (one image) between variants is not machine-stable.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sda.mini.benchmarks import BENCHMARKS
from sda.mini.commands import command, finetune_config
from sda.mini.study import PINNED_THREADS, Row, StudyRun, open_study
from sda.utils.checkpoint import extract_state_dict, safe_load
from sda.utils.io import write_json, write_text

VARIANTS: dict[str, tuple[dict[str, str], int]] = {  # name: (environment, fine-tuning threads)
    "native, 1 thread (rerun)": ({}, PINNED_THREADS),
    "scalar, 1 thread": ({"ATEN_CPU_CAPABILITY": "default"}, PINNED_THREADS),
    "native, 2 threads": ({}, 2),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="glyphs32", choices=list(BENCHMARKS), help="which mini benchmark")
    p.add_argument("--out", default=None, help="the study's folder (default results/mini/<benchmark>/study)")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    st = open_study(StudyRun(benchmark=a.benchmark, out=Path(a.out) if a.out else None))
    row = Row("stability", st.choices["recipe"], st.choices["train"])
    base = st.out / "ft" / f"{row.name}.pth"
    if not base.is_file():
        raise SystemExit(f"{base} not found: run mini/study.py first (its chosen row is the baseline)")
    out = st.out / "stability"
    ref_w = load_state_dict(base)
    ref_pred = st.scores(base, st.valC_proj).argmax(1)  # (I,)
    rows = {f"native ({torch.backends.cpu.get_cpu_capability()}), 1 thread (the study's)": _scored(st, row, base)}
    for name, (env, threads) in VARIANTS.items():
        stem = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        final, work = out / f"{stem}.pth", out / f"work-{stem}"
        t0 = time.time()
        if not final.is_file():
            data = st.train_dir(row.train)
            cfg = finetune_config(st.bench, st.source, data, work, final, 0, row.recipe.options())
            job = ("stability", command(replace(cfg, config=row.recipe.config(st.bench))))
            st.run.parallel("finetune", [job], threads_per_job=threads, env=env)
            shutil.rmtree(work, ignore_errors=True)  # per-epoch checkpoints (the study's rows drop them too)
        w = load_state_dict(final)
        pred = st.scores(final, st.valC_proj).argmax(1)
        rows[name] = {
            **_scored(st, row, final),
            "max_weight_diff": max(float((w[k].float() - ref_w[k].float()).abs().max()) for k in ref_w),
            "valC_predictions_changed_pct": float(100 * np.mean(pred != ref_pred)),
            "seconds": round(time.time() - t0, 1),
        }
    record = {"row": row.name, "variants": rows}
    write_json(out / "stability.json", record)
    write_text(out / "stability.md", _markdown(record))
    print(_markdown(record))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return extract_state_dict(safe_load(path))


def _scored(st, row: Row, ckpt: Path) -> dict:
    s = st.score_row(row, ckpt)
    return {"f": s["f"], "ft_clean": s["ft_clean"], "sda": s["sda"], "sda_minus_dda": s["sda_minus_dda"]}


def _markdown(record: dict) -> str:
    lines = [
        f"Row {record['row']}, fine-tuned under each setting; validation split, 95% intervals.",
        "",
        "| setting | max weight diff | val-C predictions changed | (f) ft - source | SDA on val-C | SDA - DDA |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in record["variants"].items():
        f, d = r["f"], r["sda_minus_dda"]
        wd = f"{r['max_weight_diff']:.2g}" if "max_weight_diff" in r else "-"
        ch = f"{r['valC_predictions_changed_pct']:.1f}%" if "valC_predictions_changed_pct" in r else "-"
        lines.append(
            f"| {name} | {wd} | {ch} | {f['value']:+.1f} [{f['lo']:+.1f}, {f['hi']:+.1f}] | {r['sda']:.1f} "
            f"| {d['value']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
