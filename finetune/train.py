"""Stage 3: fine-tune an mmpretrain classifier on a class-folder set (mmpretrain's tools/train.py).

    python finetune/train.py configs/finetune/SwinT.py [--work-dir D] [--resume [CKPT]] [--amp]
        [--cfg-options k=v ...] [--launcher none|pytorch|slurm] [--data-root DIR]
        [--final-ckpt finetuned_ckpt/SwinT.pth] [--allow-pickle]

The config may also be a model name of configs/finetune ("SwinT"). Checkpoints of every epoch go
to the work dir (default work_dirs/<config name>); at the end the final weights are written to
``finetuned_ckpt/<config name>.pth`` ({"meta", "state_dict"}) with the resolved config beside it.
Multi-GPU: ``torchrun --nproc_per_node N finetune/train.py CONFIG --launcher pytorch`` (gloo on CPU).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from sda.utils.cli import run_main
from sda.utils.errors import UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description="Fine-tune a classifier (mmpretrain) on a class-folder set.")
    p.add_argument("config", help="config file, or a model name of configs/finetune (e.g. SwinT)")
    p.add_argument("--work-dir", help="logs and per-epoch checkpoints (default work_dirs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        type=str,
        const="auto",
        help="resume from this checkpoint, or without a value from the latest one in the work dir",
    )
    p.add_argument("--amp", action="store_true", help="automatic mixed precision (GPU only)")
    p.add_argument("--no-validate", action="store_true", help="skip validation (the SDA configs have none)")
    p.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale the lr linearly from the config's base batch (auto_scale_lr) to the actual one",
    )
    p.add_argument("--no-pin-memory", action="store_true", help="disable pin_memory in the dataloaders")
    p.add_argument("--no-persistent-workers", action="store_true", help="disable persistent_workers in the dataloaders")
    p.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default=None,
        help="override config entries, e.g. load_from=path train_cfg.max_epochs=15",
    )
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none", help="job launcher")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data-root", help="class-folder training set (default: the config's data_root)")
    p.add_argument("--final-ckpt", help="where the final weights go (default finetuned_ckpt/<config name>.pth)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow arbitrary pickled objects in checkpoints (only for files you trust)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def _dataset_root(ds: Any) -> Path | None:
    """The image folder of a folder-layout dataset config (None when it reads an annotation file)."""
    if ds.get("ann_file"):
        return None
    prefix = ds.get("data_prefix", "") or ""
    if isinstance(prefix, dict):
        prefix = prefix.get("img_path", "") or ""
    return Path(ds.get("data_root", "") or "") / prefix


def merge_args(cfg: Any, args: argparse.Namespace, config_path: Path) -> Any:
    """Apply the command line to the config (mmpretrain's train-tool semantics)."""
    from mmengine.config import ConfigDict
    from mmengine.runner import find_latest_checkpoint

    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / config_path.stem)
    if args.amp:
        if not torch.cuda.is_available():
            raise UserError("--amp needs a CUDA GPU; drop --amp to train on the CPU")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    for field in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if cfg.get(field) is None:
            continue
        loader = ConfigDict(pin_memory=torch.cuda.is_available(), collate_fn=dict(type="default_collate"))
        loader.update(cfg[field])
        loader.setdefault("persistent_workers", loader.get("num_workers", 0) > 0)
        if args.no_pin_memory:
            loader.pin_memory = False
        if args.no_persistent_workers or loader.get("num_workers", 0) == 0:
            loader.persistent_workers = False
        cfg[field] = loader
    if args.data_root is not None:
        cfg.train_dataloader.dataset.data_root = args.data_root
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # --resume without a path: the newest checkpoint of the work dir; none there = a fresh start
    # from load_from (mmengine would silently start from random weights instead).
    if args.resume == "auto":
        latest = find_latest_checkpoint(cfg.work_dir)
        cfg.resume = latest is not None
        if latest is not None:
            cfg.load_from = latest
        else:
            print(f"--resume: no checkpoint in {cfg.work_dir}; starting from load_from={cfg.load_from}")
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if not torch.cuda.is_available():  # CPU runs: gloo, and DDP without device ids
        cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    return cfg


def check_inputs(cfg: Any) -> None:
    """Fail early, with one line, on a missing checkpoint or a class-folder set that does not fit."""
    from sda.classifiers import check_class_folders, head_num_classes

    if cfg.get("load_from") and "://" not in str(cfg.load_from) and not Path(cfg.load_from).is_file():
        raise UserError(
            f"checkpoint {cfg.load_from} not found; download it with scripts/download_ckpt.sh "
            "or set --cfg-options load_from=PATH (load_from=None trains from scratch)"
        )
    ds = cfg.train_dataloader.dataset
    root = _dataset_root(ds)
    if root is not None and ds.get("type") in ("CustomDataset", "ImageNet"):
        check_class_folders(root, head_num_classes(cfg))


def save_final(runner: Any, cfg: Any, path: Path) -> None:
    """The trained weights as {"meta", "state_dict"} (atomic) with the resolved config beside them."""
    import mmengine
    import mmpretrain
    from mmengine.model import is_model_wrapper

    from sda.utils.io import atomic_write, write_text

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


def main(argv: list[str] | None = None) -> None:
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from sda.classifiers import install_safe_checkpoint_loading, resolve_config_path, safe_checkpoint_hook
    from sda.utils.dist import barrier, init_distributed, is_main

    args = parse_args(argv)
    config_path = resolve_config_path(args.config)
    cfg = merge_args(Config.fromfile(str(config_path)), args, config_path)
    check_inputs(cfg)
    if args.launcher == "pytorch":  # our init: gloo on CPU (mmengine's assumes CUDA)
        init_distributed()
    install_safe_checkpoint_loading(allow_pickle=args.allow_pickle)

    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    runner.register_hook(safe_checkpoint_hook(), priority="VERY_HIGH")
    runner.train()

    final = Path(args.final_ckpt) if args.final_ckpt else Path("finetuned_ckpt") / f"{config_path.stem}.pth"
    if is_main():
        save_final(runner, cfg, final)
    barrier()


if __name__ == "__main__":
    run_main(main)
