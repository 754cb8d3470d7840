"""A short diffusion training loop (the core; its command line is ``sda.training``, shared by ``gen/train.py``
for DiT or a class-conditional ADM and ``align/train.py`` for the unconditional ADM).

The recipe is DiT's (``train.py``) without the launcher: AdamW at a constant learning rate (with an
optional linear warm-up), an EMA copy of the weights, uniform timesteps and the loss of the shared
diffusion core (``training_losses``: MSE on epsilon, plus the variational bound for the learned
variance when ``learn_sigma``). Checkpoints use DiT's training format::

    {"model": state dict, "ema": state dict, "opt": optimizer state, "args": argparse.Namespace, "step": int}

Every random draw of step ``s`` (batch, timesteps, noise) comes from seeds derived from
``(seed, s)``, and the learning rate depends only on ``s``, so a run resumed from a checkpoint
continues exactly as if it had not stopped, and the first ``n`` steps of a longer run equal a run of
``n`` steps.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from sda.diffusion import randn_like_gen, sample_timesteps
from sda.utils.checkpoint import safe_load
from sda.utils.errors import UserError
from sda.utils.images import center_crop_arr
from sda.utils.io import atomic_write, is_image_file
from sda.utils.seed import image_seed, make_generator

CKPT_KEYS = ("model", "ema", "opt", "args", "step")


@dataclass
class TrainSettings:
    """Optimisation settings of :func:`train`."""

    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 0  # linear warm-up steps of the learning rate
    decay_steps: int = 0  # linear decay to 0 over the last decay_steps steps (0: constant to the end)
    ema_decay: float = 0.999
    seed: int = 0
    ckpt_every: int = 500
    log_every: int = 50
    class_dropout: float = 0.0  # share of labels replaced by the null class (index num_classes) for CFG
    num_classes: int = 0  # the null class's index when class_dropout > 0


def drop_labels(y: torch.Tensor, step: int, s: TrainSettings) -> torch.Tensor:
    """DiT's label dropout for classifier-free guidance: each label becomes the null class ``s.num_classes``
    with probability ``s.class_dropout``, from a generator of its own (the other draws stay as without)."""
    if s.class_dropout <= 0:
        return y
    drop = torch.rand(len(y), generator=make_generator(image_seed(s.seed, "labels", step))) < s.class_dropout  # (B,)
    return torch.where(drop.to(y.device), torch.full_like(y, s.num_classes), y)


# ---------------------------------------------------------------------------------------------
# data


def load_class_folder(root: str | os.PathLike, image_size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All images of a class-folder tree ``root/<class>/<file>`` in memory.

    Returns (x (N, 3, S, S) float32 in [-1, 1], y (N,) int64 from the sorted folder order, class names).
    The mini benchmark's sets are small; a full-scale set would want a streaming loader.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"training data {root} not found; give a class-folder root (<root>/<class>/<image>)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted(os.listdir(root / name)):
            if is_image_file(f):
                with Image.open(root / name / f) as img:
                    xs.append(center_crop_arr(img.convert("RGB"), image_size))
                ys.append(label)
    if not xs:
        raise UserError(f"no images found under {root}/<class>/; expected a class-folder layout")
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, S, S)
    return x, torch.tensor(ys, dtype=torch.int64), classes


# ---------------------------------------------------------------------------------------------
# training pieces


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every parameter (buffers are copied)."""
    ema_params = dict(ema.named_parameters())
    for name, p in model.named_parameters():
        ema_params[name].mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    ema_buffers = dict(ema.named_buffers())
    for name, b in model.named_buffers():
        ema_buffers[name].copy_(b)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay after ``step`` updates: min(decay, (1 + step) / (10 + step)).

    The warm-up keeps the random initial weights out of the average of a short run (with a fixed
    0.999 they would still weigh e^-1 = 37% after 1000 steps).
    """
    return min(decay, (1.0 + step) / (10.0 + step))


def lr_at(step: int, s: TrainSettings) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, constant, then an optional linear decay.

    The rate depends only on the step (and on ``steps`` during the final decay), so a resumed run and
    the first steps of a longer run follow the same schedule.
    """
    if s.warmup > 0 and step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    if s.decay_steps > 0 and step >= s.steps - s.decay_steps:
        return s.lr * (s.steps - step) / s.decay_steps
    return s.lr


def batch_at(step: int, n: int, s: TrainSettings) -> torch.Tensor:
    """Indices of step ``step``'s batch: epochs of a seeded permutation, the last partial batch dropped."""
    per_epoch = max(n // s.batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=make_generator(image_seed(s.seed, "epoch", epoch)))  # (n,)
    return perm[pos * s.batch_size : (pos + 1) * s.batch_size]  # (B,)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    args: argparse.Namespace,
    step: int,
) -> None:
    """Write a DiT-format training checkpoint atomically."""
    obj = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args, "step": step}
    with atomic_write(path) as f:
        torch.save(obj, f)


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer | None = None
) -> int:
    """Restore model / EMA / optimizer from a training checkpoint; returns the step to continue from."""
    ckpt = safe_load(path)
    missing = [k for k in ("model", "ema", "opt") if k not in ckpt]
    if missing:
        raise UserError(f"{path} is not a training checkpoint (missing {missing}); start a new results folder")
    model.load_state_dict(ckpt["model"], strict=True)
    ema.load_state_dict(ckpt["ema"], strict=True)
    if opt is not None:
        opt.load_state_dict(ckpt["opt"])
    return int(ckpt.get("step", 0))


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The highest-step ``<ckpt_dir>/<step:07d>.pt``, or None."""
    ckpt_dir = Path(ckpt_dir)
    found = sorted(ckpt_dir.glob("[0-9]" * 7 + ".pt")) if ckpt_dir.is_dir() else []
    return found[-1] if found else None


def export_ema(ckpt: str | os.PathLike, out: str | os.PathLike) -> None:
    """Write the EMA weights of a training checkpoint as a plain state dict (guided-diffusion's format)."""
    sd = safe_load(ckpt)["ema"]
    with atomic_write(out) as f:
        torch.save({k: v.contiguous() for k, v in sd.items()}, f)


# ---------------------------------------------------------------------------------------------
# the loop


def train(
    model: nn.Module,
    diffusion: Any,
    x: torch.Tensor,
    y: torch.Tensor | None,
    settings: TrainSettings,
    ckpt_dir: str | os.PathLike,
    args: argparse.Namespace,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``model`` on images ``x`` (N, C, H, W) in [-1, 1] (labels ``y`` (N,) when class-conditional).

    Resumes from the latest checkpoint in ``ckpt_dir``; writes one every ``ckpt_every`` steps and at
    the end. Returns {"step", "loss" (mean of the last log window), "seconds" (this run), "checkpoint",
    "ema" (the EMA model)}.
    """
    s = settings
    if len(x) < s.batch_size:
        raise UserError(f"{len(x)} training images is fewer than one batch ({s.batch_size}); lower --global_batch_size")
    device = next(model.parameters()).device
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    step = 0
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        step = load_checkpoint(last, model, ema, opt)
        log(f"resumed from {last} at step {step}")
    model.train()
    ema.eval()
    start, t0, window, ckpt, last_loss = time.time(), time.time(), [], last, None
    while step < s.steps:
        idx = batch_at(step, len(x), s)  # (B,)
        x0 = x[idx].to(device)  # (B, C, H, W)
        model_kwargs = {} if y is None else {"y": drop_labels(y[idx], step, s).to(device)}
        gen = make_generator(image_seed(s.seed, "step", step))
        t = sample_timesteps(len(idx), diffusion.num_timesteps, gen, device)  # (B,)
        noise = randn_like_gen(x0.shape, gen, device, x0.dtype)  # (B, C, H, W)
        loss = diffusion.training_losses(model, x0, t, model_kwargs, noise=noise)["loss"].mean()
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"loss is {loss.item()} at step {step}; lower the learning rate")
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(ema, model, ema_decay_at(step, s.ema_decay))
        step += 1
        window.append(loss.item())
        if step % s.log_every == 0 or step == s.steps:
            rate = (time.time() - t0) / max(len(window), 1)
            log(f"step {step:7d}  loss {np.mean(window):.4f}  {rate:.2f} s/step")
            last_loss, window, t0 = float(np.mean(window)), [], time.time()
        if step % s.ckpt_every == 0 or step == s.steps:
            ckpt = Path(ckpt_dir) / f"{step:07d}.pt"
            save_checkpoint(ckpt, model, ema, opt, args, step)
    return {
        "step": step,
        "loss": last_loss,
        "seconds": time.time() - start,
        "checkpoint": None if ckpt is None else str(ckpt),
        "ema": ema,
    }
