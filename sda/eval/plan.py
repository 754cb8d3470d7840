"""``eval/evaluate.py --plan``: what an eval run will score, before it loads a model.

Counts the images of every set (the subset's only), checks that each input exists or is made by an earlier
stage of this run (``$SDA_PLANNED``, see ``sda.utils.plan``), and counts the classifier forwards: one per
(model, image) pair the modes need, as ``sda.eval.scoring`` runs them, plus the adaptation baselines' passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sda.eval import ensemble
from sda.eval.config import DIFFPURE, EvalConfig
from sda.eval.pairs import Roots, build_subsets
from sda.eval.tta import cost_estimate
from sda.utils.errors import UserError
from sda.utils.plan import count, planned_images


def forward_pairs(modes: list[str] | tuple[str, ...], single: str) -> list[tuple[str, str]]:
    """The (model, image) pairs a batch is scored with, each run once: model "original" / "finetuned", image
    "raw", "projected", "purified" or a fuse mode's blend."""
    pairs: list[tuple[str, str]] = []

    def need(*ps: tuple[str, str]) -> None:
        pairs.extend(p for p in ps if p not in pairs)

    for m in modes:
        if m == "sda":
            need(("original", "raw"), ("finetuned", "projected"))
        elif m == "first":
            need((single, "raw"))
        elif m == "second":
            need((single, "projected"))
        elif m == DIFFPURE:
            need((single, "purified"))
        elif m in ensemble.FUSE_MODES:
            need((single, "raw"), (single, "projected"), (single, f"{m} blend"))
        else:
            need((single, "raw"), (single, "projected"))
    return pairs


def _input(path: str | None, flag: str, fix: str) -> str:
    """'present', or 'made earlier in this run'; anything else is a UserError naming the flag."""
    if path is None or Path(path).exists():
        return "present"
    if planned_images(path) is not None:
        return "made earlier in this run"
    raise UserError(f"{flag} {path} not found; {fix}")


def eval_plan(cfg: EvalConfig) -> dict[str, Any]:
    """The plan of ``cfg``'s run as a dict, printed as lines."""
    _input(cfg.checkpoint, "checkpoint", "fine-tune it with scripts/finetune.sh (or use the authors' checkpoint)")
    _input(cfg.originckpt, "--originckpt", "fetch it with scripts/download_ckpt.sh")
    proj = (
        _input(cfg.data_prefix2, "--data_prefix2", "project it with scripts/align.sh") if cfg.with_projection else None
    )
    pur = _input(cfg.data_prefix_diffpure, "--data_prefix_diffpure", "purify it with METHOD=diffpure scripts/align.sh")
    if not Path(cfg.data_prefix1).is_dir():
        raise UserError(f"--data_prefix1 {cfg.data_prefix1} not found; it is the raw target set (see the README)")
    subsets = build_subsets(cfg.datatype, Roots(Path(cfg.data_prefix1)), cfg.corruptions, cfg.severities,
                            subset=cfg.subset)  # fmt: skip
    images = sum(len(s.rels) for s in subsets)
    pairs = forward_pairs(cfg.modes, cfg.single)
    plan = {
        "datatype": cfg.datatype,
        "sets": len(subsets),
        "images": images,
        "subset": cfg.subset.key(),
        "forwards_per_image": len(pairs),
        "forwards": images * len(pairs),
        "pairs": pairs,
        "projections": proj,
        "purifications": pur if DIFFPURE in cfg.modes else None,
        "adaptation": cost_estimate(cfg.tta, images) if cfg.tta.methods else None,
    }
    sub = cfg.subset.key()
    what = f"{len(subsets)} set(s)" + (f", {sub['per_class']} per class (seed {sub['seed']})" if sub else "")
    lines = [
        f"eval plan ({cfg.datatype}: {cfg.data_prefix1}):",
        f"  images: {count(images)} in {what}" + (f"; projections ({cfg.data_prefix2}): {proj}" if proj else ""),
        f"  per image: {len(pairs)} classifier forward(s): " + ", ".join(f"{m} on {v}" for m, v in pairs),
        f"  total: {count(plan['forwards'])} classifier forwards"
        + (f"; adaptation baselines: {plan['adaptation']}" if plan["adaptation"] else ""),
    ]
    print("\n".join(lines), flush=True)
    return plan
