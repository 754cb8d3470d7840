"""Stage 3's guarantees, the same as gen's and align's: ``--cfg-options`` keys that exist, a run key over every
setting and the inputs' content, one writer per work dir, atomic checkpoints, no silent NaN.

- ``check_cfg_keys``: every ``--cfg-options`` key must name something the config has, or a setting of mmengine's
  Runner (a typo such as ``trian_cfg.max_epochs`` would otherwise be ignored); ``+key=value`` adds a new key.
- ``run_key``: the resolved config (every entry, flattened), the source checkpoint's content hash, a digest of the
  training set's file list (relative names and sizes), the process count and the final checkpoint's path. A
  resume (or a rerun in the same work dir) with any of them changed is refused, naming the entries.
- ``atomic_checkpoints``: mmengine writes epoch checkpoints in place; here they are written under this project's
  temporary names and renamed, so a killed run leaves no truncated ``epoch_N.pth``, and the next claim of the
  work dir removes its partial files.
- ``guard_hook``: the loss is checked after every iteration; a NaN or infinite loss stops the run with one line
  (nothing final is written); the random streams are saved with each checkpoint and restored on resume
  (``sda.finetune.resume``); persistent workers that ``sda.finetune.workers`` reseeds per epoch get a loader
  generator of their own, so that making their one iterator does not draw from the training stream.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sda.finetune import resume as rng
from sda.utils.errors import UserError

RUN_FILE = "finetune_run.json"  # in the work dir: {"settings": run key, "seed": the run's random seed}
NEW_KEY = "+"  # --cfg-options +key=value: a key the config does not have yet


def _walk(node: Any, part: str) -> tuple[bool, Any]:
    if isinstance(node, Mapping):
        return (part in node), node.get(part)
    if isinstance(node, (list, tuple)) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
        return True, node[int(part)]
    return False, None


def runner_settings() -> set[str]:
    """The top-level config keys mmengine's Runner reads (its constructor's arguments, e.g. ``log_processor``)."""
    import inspect

    from mmengine.runner import Runner

    return set(inspect.signature(Runner.__init__).parameters) - {"self", "cfg"} | {"runner_type"}


def check_cfg_keys(cfg: Any, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` with the new-key marks removed; an unmarked key the config lacks is a UserError naming the
    first missing part and the closest existing names."""
    out = {}
    for key, value in (options or {}).items():
        if key.startswith(NEW_KEY):
            out[key[len(NEW_KEY) :]] = value
            continue
        node, path = getattr(cfg, "_cfg_dict", cfg), []  # an mmengine Config holds its tree in a ConfigDict
        if key.split(".")[0] not in node and key.split(".")[0] in runner_settings():
            out[key] = value  # a setting of mmengine's Runner that the config leaves at its default
            continue
        for part in key.split("."):
            found, child = _walk(node, part)
            if not found:
                names = [str(k) for k in node] if isinstance(node, Mapping) else []
                close = difflib.get_close_matches(part, names, n=3)
                where = ".".join(path) or "the config"
                hint = f" (did you mean {' or '.join('.'.join([*path, c]) for c in close)}?)" if close else ""
                raise UserError(
                    f"--cfg-options {key}: {where} has no {part!r}{hint}; to add a new key write +{key}=..."
                )
            node, path = child, [*path, part]
        out[key] = value
    return out


def _flat(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, Mapping):
        out: dict[str, str] = {}
        for k in sorted(node, key=str):
            out.update(_flat(node[k], f"{prefix}{k}."))
        return out
    return {prefix[:-1]: repr(node)}


def data_digest(root: Path | None) -> dict[str, Any]:
    """The training set's file list (relative names and sizes; hidden files skipped) as a count and a digest."""
    if root is None or not root.is_dir():
        return {"files": 0, "listing_sha256": None}
    h, n = hashlib.sha256(), 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            p = Path(dirpath) / name
            h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\n".encode())
            n += 1
    return {"files": n, "listing_sha256": h.hexdigest()}


def check_link_loops(root: Path) -> None:
    """A folder link inside the training set that points at one of its own ancestors makes mmengine's listing
    recurse until the OS stops it; name the link instead."""
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            link = Path(dirpath) / d
            if link.is_symlink() and link.parent.resolve().is_relative_to(link.resolve()):
                raise UserError(f"{link} links to its own ancestor {link.resolve()} (a loop); remove the link")


IGNORED = ("work_dir", "resume", "launcher", "load_from")  # where the run writes, how it starts: not what it makes


def run_key(cfg: Any, data_root: Path | None, final: Path, world_size: int) -> dict[str, Any]:
    """Everything that changes the fine-tuned weights (``cfg`` before ``--resume`` is applied)."""
    from sda.utils.checkpoint import cached_sha256

    src = cfg.get("load_from")
    local = src and "://" not in str(src) and Path(src).is_file()
    settings = {k: v for k, v in _flat(cfg.to_dict()).items() if k.split(".")[0] not in IGNORED}
    return {
        "config": settings,
        "load_from": {"path": str(src), "sha256": cached_sha256(src) if local else None},
        "data": data_digest(data_root),
        "processes": world_size,
        "final_ckpt": str(final.resolve()),
    }


def read_run_file(work_dir: str | Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(work_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def atomic_checkpoints() -> None:
    """mmengine's epoch checkpoints written atomically (local paths; other backends as mmengine does)."""
    import mmengine.runner.runner as mm_runner
    import torch

    from sda.utils.io import atomic_write

    original = getattr(mm_runner.save_checkpoint, "__wrapped__", mm_runner.save_checkpoint)

    def save_checkpoint(checkpoint: dict, filename: str, file_client_args: Any = None, backend_args: Any = None):
        if "://" in str(filename) or file_client_args is not None or backend_args is not None:
            return original(checkpoint, filename, file_client_args=file_client_args, backend_args=backend_args)
        with atomic_write(filename) as f:
            torch.save(checkpoint, f)

    save_checkpoint.__wrapped__ = original  # type: ignore[attr-defined]
    mm_runner.save_checkpoint = save_checkpoint


def guard_hook() -> Any:
    """The hook that stops on a non-finite loss and keeps the random streams with the checkpoints."""
    import torch
    from mmengine.hooks import Hook

    from sda.finetune.workers import EpochSeededDataset

    class GuardHook(Hook):
        priority = "VERY_HIGH"

        def __init__(self) -> None:
            self.resumed_states: list[dict[str, Any]] | None = None

        def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            checkpoint[rng.KEY] = rng.gathered_states()

        def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            if getattr(runner, "_resume", False) and rng.KEY in checkpoint:
                self.resumed_states = checkpoint[rng.KEY]

        def before_train(self, runner: Any) -> None:  # after mmengine's resume, which may reseed
            loader = runner.train_dataloader
            seeded = isinstance(loader.dataset, EpochSeededDataset)  # only persistent workers are wrapped
            if seeded:
                # the one iterator of persistent workers is made in the first epoch run, the first ever or
                # the first resumed one: its base seed comes from its own generator, not the training stream
                loader.generator = torch.Generator().manual_seed(loader.dataset.seed)
            if self.resumed_states is not None:
                rng.restore_own(self.resumed_states)
                if loader.persistent_workers and loader.num_workers > 0 and not seeded:
                    warnings.warn(
                        "resumed with persistent data-loader workers: their augmentation streams restart, so this "
                        "run will not equal an uninterrupted one (use --no-persistent-workers or num_workers=0 "
                        "for an exact resume)",
                        stacklevel=1,
                    )

        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
            for name, value in (outputs or {}).items():
                if "loss" in name and not math.isfinite(float(value)):
                    raise UserError(
                        f"the training {name} became {float(value)} at epoch {runner.epoch + 1}, iteration "
                        f"{runner.iter + 1}; nothing final was written. Check the start checkpoint "
                        f"({runner.cfg.get('load_from')}) for NaN weights, or lower the learning rate "
                        "(--cfg-options optim_wrapper.optimizer.lr=...)"
                    )

    return GuardHook()
