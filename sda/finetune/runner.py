"""Stage 3 (finetune): fine-tune an mmpretrain classifier on a class-folder set (mmpretrain's tools/train.py).

``FinetuneConfig`` (``sda.finetune.config``) holds the command line's settings; ``apply_run`` applies them to the
mmengine config and ``check_config`` checks the result once, before any work; ``finetune`` trains with
mmengine's Runner (checkpoints loaded safely and strictly) and writes the final weights as
``{"meta", "state_dict"}`` with the resolved config beside them.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import torch

from sda.finetune.classifiers import check_class_folders, head_num_classes, load_config, resolve_config_path
from sda.finetune.config import FinetuneConfig
from sda.finetune.guard import RUN_FILE, check_cfg_keys, check_link_loops, read_run_file, run_key
from sda.utils.errors import UserError
from sda.utils.io import atomic_write, check_writable_dir, check_writable_file, remove_own_partials, write_text
from sda.utils.runfolder import RunFolder

FINAL_DIR = "finetuned_ckpt"  # finetuned_ckpt/<config name>.pth, as the reference names them


def _dataset_root(ds: Any) -> Path | None:
    """The image folder of a folder-layout dataset config (None when it reads an annotation file)."""
    if ds.get("ann_file"):
        return None
    prefix = ds.get("data_prefix", "") or ""
    if isinstance(prefix, dict):
        prefix = prefix.get("img_path", "") or ""
    return Path(ds.get("data_root", "") or "") / prefix


def _loader(cfg_loader: Any, run: FinetuneConfig) -> Any:
    """A dataloader config with the train tool's defaults (pin memory on CUDA, persistent workers)."""
    from mmengine.config import ConfigDict

    loader = ConfigDict(pin_memory=torch.cuda.is_available(), collate_fn=dict(type="default_collate"))
    loader.update(cfg_loader)
    loader.setdefault("persistent_workers", loader.get("num_workers", 0) > 0)
    if run.no_pin_memory:
        loader.pin_memory = False
    if run.no_persistent_workers or loader.get("num_workers", 0) == 0:
        loader.persistent_workers = False
    return loader


def latest_checkpoint(work_dir: str | Path) -> str | None:
    """The newest checkpoint of a work dir: the highest ``epoch_N.pth`` / ``iter_N.pth`` there (complete: they
    are written atomically), else the one mmengine's ``last_checkpoint`` names. mmengine reads only that file,
    which a run killed between writing a checkpoint and naming it leaves missing, empty or one behind."""
    work = Path(work_dir)
    numbered = [
        (int(p.stem.split("_")[1]), p) for p in work.glob("*_*.pth") if re.fullmatch(r"(epoch|iter)_\d+", p.stem)
    ]
    if numbered:
        return str(max(numbered)[1])
    try:
        named = (work / "last_checkpoint").read_text().strip()
    except OSError:
        return None
    return named if named and Path(named).is_file() else None


def _resume(cfg: Any, resume: str | None) -> None:
    """``--resume`` without a path: the newest checkpoint of the work dir; none there = a fresh start
    from load_from (mmengine would silently start from random weights instead)."""
    if resume == "auto":
        latest = latest_checkpoint(cfg.work_dir)
        cfg.resume = latest is not None
        if latest is not None:
            cfg.load_from = latest
        else:
            print(f"--resume: no checkpoint in {cfg.work_dir}; starting from load_from={cfg.load_from}")
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume


def apply_run(cfg: Any, run: FinetuneConfig, config_path: Path) -> Any:
    """Apply the run's settings to the mmengine config (mmpretrain's train-tool semantics: ``--cfg-options``
    first, then the dedicated flags, then the dataloader defaults that depend on the result)."""
    if run.cfg_options:
        cfg.merge_from_dict(check_cfg_keys(cfg, run.cfg_options))
    if run.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.launcher = run.launcher
    if run.work_dir is not None:
        cfg.work_dir = run.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / config_path.stem)
    if run.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if run.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    for field in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if cfg.get(field) is not None:
            cfg[field] = _loader(cfg[field], run)
    if run.data_root is not None:
        cfg.train_dataloader.dataset.data_root = run.data_root
    if not torch.cuda.is_available():  # CPU runs: gloo, and DDP without device ids
        cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    return cfg


def check_config(cfg: Any, data: bool = True) -> None:
    """The one check of a resolved run, before any work: one line on AMP without a GPU, a missing checkpoint,
    a bad batch size or epoch count, or (``data``) a class-folder set that does not fit the head."""
    if cfg.optim_wrapper.get("type") == "AmpOptimWrapper" and not torch.cuda.is_available():
        raise UserError("--amp needs a CUDA GPU; drop --amp to train on the CPU")
    if cfg.get("load_from") and "://" not in str(cfg.load_from) and not Path(cfg.load_from).is_file():
        raise UserError(
            f"checkpoint {cfg.load_from} not found; download it with scripts/download_ckpt.sh "
            "or set --cfg-options load_from=PATH (load_from=None trains from scratch)"
        )
    batch = cfg.train_dataloader.get("batch_size")
    if not isinstance(batch, int) or batch < 1:
        raise UserError(
            f"train_dataloader.batch_size={batch!r}: use a positive integer (--cfg-options "
            "train_dataloader.batch_size=64)"
        )
    epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise UserError(f"train_cfg.max_epochs={epochs!r}: use a positive integer")
    ds = cfg.train_dataloader.dataset
    root = _dataset_root(ds)
    if data and root is not None and ds.get("type") in ("CustomDataset", "ImageNet"):
        check_link_loops(root)
        check_class_folders(root, head_num_classes(cfg))


def save_final(runner: Any, cfg: Any, path: Path) -> None:
    """The trained weights as {"meta", "state_dict"} (atomic) with the resolved config beside them."""
    import mmengine
    import mmpretrain
    from mmengine.model import is_model_wrapper

    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    classes = runner.train_dataloader.dataset.metainfo.get("classes")
    meta = dict(
        epoch=runner.epoch,
        iter=runner.iter,
        mmpretrain_version=mmpretrain.__version__,
        mmengine_version=mmengine.__version__,
        config=path.with_suffix(".py").name,
        dataset_meta=dict(classes=list(classes) if classes is not None else None),
    )
    with atomic_write(path) as f:
        torch.save({"meta": meta, "state_dict": state_dict}, f)
    write_text(path.with_suffix(".py"), cfg.pretty_text)
    runner.logger.info(f"final weights: {path} (config {path.with_suffix('.py')})")


def resolved_config(run: FinetuneConfig, resume: bool = True) -> tuple[Any, Path]:
    """The mmengine config with the run's settings applied (``resume``: ``--resume`` too), and the final
    checkpoint's path. A config file that does not parse is a UserError naming it."""
    config_path = resolve_config_path(run.config)
    cfg = apply_run(load_config(config_path), run, config_path)
    if resume:
        _resume(cfg, run.resume)
    return cfg, Path(run.final_ckpt) if run.final_ckpt else Path(FINAL_DIR) / f"{config_path.stem}.pth"


def claim_work_dir(cfg: Any, run: FinetuneConfig, final: Path, world_size: int) -> tuple[RunFolder, int]:
    """Lock the work dir, refuse it when it holds a run with other settings or inputs, remove a killed run's
    partial files, and fix the run's seed (the config's; else a resumed run's own; else a new random one, as
    mmengine draws when the config has none). Rank 0 only."""
    key = run_key(cfg, _dataset_root(cfg.train_dataloader.dataset), final, world_size)
    folder = RunFolder(cfg.work_dir, key, RUN_FILE, fix="use another --work-dir, or the same settings and inputs")
    seed = (cfg.get("randomness") or {}).get("seed")
    if seed is None:
        stored = read_run_file(cfg.work_dir).get("seed")
        seed = stored if run.resume and isinstance(stored, int) else int.from_bytes(os.urandom(4), "little") % 2**31
    folder.claim(record={"settings": key, "seed": seed})
    remove_own_partials(final)
    return folder, seed


def finetune(run: FinetuneConfig) -> Path:
    """Train; returns the final checkpoint's path (written by rank 0)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from sda.finetune.checkpoints import install_safe_checkpoint_loading, safe_checkpoint_hook
    from sda.finetune.guard import atomic_checkpoints, guard_hook
    from sda.finetune.workers import epoch_seeded
    from sda.utils.dist import barrier, init_distributed, is_main, rank0_plan, rank_and_world

    cfg, final = resolved_config(run, resume=False)
    check_config(cfg)
    check_writable_file(final, "--final-ckpt")
    check_writable_dir(cfg.work_dir, "--work-dir")
    if run.launcher == "pytorch":  # our init: gloo on CPU (mmengine's assumes CUDA)
        init_distributed()
    claim: dict[str, RunFolder] = {}

    def take() -> int:
        claim["folder"], seed = claim_work_dir(cfg, run, final, rank_and_world()[1])
        return seed

    try:
        cfg.setdefault("randomness", {})["seed"] = rank0_plan(take)
        _resume(cfg, run.resume)
        # persistent workers draw per-epoch streams (exact resume); the final config is saved without the wrappers
        run_cfg = copy.deepcopy(cfg)
        run_cfg.train_dataloader = epoch_seeded(cfg.train_dataloader, cfg.randomness.seed, rank_and_world()[0])
        atomic_checkpoints()
        install_safe_checkpoint_loading(allow_pickle=run.allow_pickle)
        runner = Runner.from_cfg(run_cfg) if "runner_type" not in cfg else RUNNERS.build(run_cfg)
        runner.register_hook(safe_checkpoint_hook(), priority="VERY_HIGH")
        runner.register_hook(guard_hook(), priority="VERY_HIGH")
        try:
            runner.train()
        except AssertionError as e:  # mmcv's image loading asserts; name the file and the fix instead
            if "failed to load image" not in str(e):
                raise
            raise UserError(
                f"a training image cannot be read ({e}); remove or replace it, then rerun with --resume"
            ) from e
        if is_main():
            save_final(runner, cfg, final)
        barrier()
    finally:
        if "folder" in claim:
            claim["folder"].release()
    return final
