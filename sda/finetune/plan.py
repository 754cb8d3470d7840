"""``finetune/train.py --plan``: the fine-tune's work before it starts (images, epochs, iterations, passes) and
a check of its inputs (the training set, or an earlier stage of this run that makes it; the start checkpoint)."""

from __future__ import annotations

import math
from typing import Any

from sda.finetune.config import FinetuneConfig
from sda.finetune.runner import _dataset_root, check_config, resolved_config
from sda.utils.errors import UserError
from sda.utils.io import list_images
from sda.utils.plan import count, planned_images


def finetune_plan(run: FinetuneConfig, processes: int = 1) -> dict[str, Any]:
    cfg, final = resolved_config(run)
    root = _dataset_root(cfg.train_dataloader.dataset)
    made_earlier = None if root is None or root.exists() else planned_images(root)
    if root is not None and not root.exists() and made_earlier is None:
        raise UserError(f"training set {root} not found; make it with scripts/align.sh D (or set --data-root)")
    check_config(cfg, data=made_earlier is None)
    images = made_earlier if made_earlier is not None else (len(list_images(root)) if root is not None else 0)
    epochs = int((cfg.get("train_cfg") or {}).get("max_epochs") or 0)
    batch = int(cfg.train_dataloader.batch_size)
    iters = math.ceil(images / (batch * processes)) * epochs if images else 0
    plan = {"images": images, "epochs": epochs, "batch": batch, "processes": processes, "iterations": iters,
            "passes": images * epochs, "final": str(final), "work_dir": str(cfg.work_dir)}  # fmt: skip
    src = f"{root} (made by an earlier stage of this run)" if made_earlier is not None else str(root)
    print(
        "\n".join([
            f"finetune plan ({run.config} from {cfg.get('load_from')}):",
            f"  images: {count(images)} in {src}",
            f"  {epochs} epochs x {math.ceil(images / (batch * processes)) if images else 0} iterations of "
            f"{batch} per process x {processes} process(es) = {count(iters)} iterations",
            f"  total: {count(images * epochs)} classifier forwards and backwards",
            f"  output: {final} (logs and checkpoints in {cfg.work_dir})",
        ]),
        flush=True,
    )  # fmt: skip
    return plan
