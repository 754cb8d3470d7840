"""A short diffusion training loop shared by ``gen/train.py`` (DiT or class-conditional ADM) and
``align/train.py`` (unconditional ADM).

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


# ---------------------------------------------------------------------------------------------
# data


def center_crop_arr(img: Image.Image, image_size: int) -> np.ndarray:
    """ADM's preprocessing: halve with BOX while the short side >= 2x size, BICUBIC, center crop.

    Returns (image_size, image_size, 3) uint8.
    """
    while min(*img.size) >= 2 * image_size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = image_size / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top : top + image_size, left : left + image_size]


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
        model_kwargs = {} if y is None else {"y": y[idx].to(device)}
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


# ---------------------------------------------------------------------------------------------
# command line shared by gen/train.py and align/train.py


def load_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Flag defaults from a JSON file ``{"flag_name": value, ...}`` (keys are argparse dest names)."""
    if path is None:
        return {}
    import json

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path} not found")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"config {path} is not valid JSON ({e})") from e
    return {k: v for k, v in cfg.items() if not k.startswith("_")}  # "_comment" keys are notes


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Data, diffusion and optimisation flags (guided-diffusion's names where it has one)."""
    parser.add_argument("--config", default=None, help="JSON file of flag defaults (command-line flags win)")
    parser.add_argument("--data_dir", default=None, help="class-folder training images <data_dir>/<class>/<image>")
    parser.add_argument("--results_dir", default=None, help="checkpoints go to <results_dir>/checkpoints/<step>.pt")
    parser.add_argument("--export", default=None, help="write the final EMA weights here as a plain state dict")
    parser.add_argument("--diffusion_steps", type=int, default=1000)
    parser.add_argument("--noise_schedule", default="linear")
    parser.add_argument("--rescale_learned_sigmas", type=_bool, default=False)
    parser.add_argument(
        "--predict_xstart",
        type=_bool,
        default=False,
        help="the model predicts x0 instead of the noise (guided-diffusion's flag)",
    )
    parser.add_argument(
        "--predict_v",
        type=_bool,
        default=False,
        help="the model predicts v = sqrt(abar) eps - sqrt(1 - abar) x0 (not in guided-diffusion)",
    )
    parser.add_argument("--steps", type=int, default=1000, help="total optimisation steps (resume continues to it)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    parser.add_argument("--decay_steps", type=int, default=0, help="linear learning-rate decay to 0 at the end")
    parser.add_argument("--ema_rate", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ckpt_every", type=int, default=500)
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def _bool(v: str | bool) -> bool:
    from sda.models.unet import str2bool

    return str2bool(v)


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse twice: the first pass finds ``--config``, whose values become the defaults of the second."""
    pre, _ = parser.parse_known_args(argv)
    cfg = load_config(pre.config)
    known = {a.dest for a in parser._actions}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise UserError(f"config {pre.config} has unknown keys {unknown}; use flag names such as {sorted(known)[:4]}")
    parser.set_defaults(**cfg)
    args = parser.parse_args(argv)
    for name in ("data_dir", "results_dir"):
        if getattr(args, name) is None:
            raise UserError(f"--{name} is required (on the command line or in --config)")
    if args.predict_xstart and args.predict_v:
        raise UserError("--predict_xstart and --predict_v exclude each other; set at most one")
    return args


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        decay_steps=args.decay_steps,
        ema_decay=args.ema_rate,
        seed=args.seed,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
    )


def run_training(
    args: argparse.Namespace, build_model: Callable[[], nn.Module], class_cond: bool, learn_sigma: bool
) -> dict[str, Any]:
    """Seed, build the model, load ``--data_dir``, train to ``--steps``, optionally export the EMA weights.

    The model is built after ``torch.manual_seed(--seed)``, so its initial weights, like every later
    draw, follow from the seed: the same command gives the same checkpoints.
    """
    from sda.diffusion import create_diffusion
    from sda.utils.dist import init_distributed
    from sda.utils.io import write_json

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model()
    device = init_distributed(args.device).device
    x, y, classes = load_class_folder(args.data_dir, args.image_size)
    print(
        f"{len(x)} training images in {len(classes)} classes from {args.data_dir}; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    diffusion = create_diffusion(
        "",
        noise_schedule=args.noise_schedule,
        learn_sigma=learn_sigma,
        rescale_learned_sigmas=args.rescale_learned_sigmas,
        predict_xstart=args.predict_xstart,
        predict_v=args.predict_v,
        diffusion_steps=args.diffusion_steps,
    )
    results = Path(args.results_dir)
    write_json(results / "args.json", vars(args))  # the resolved settings next to the results
    out = train(
        model.to(device),
        diffusion,
        x,
        y if class_cond else None,
        settings_from_args(args),
        results / "checkpoints",
        args,
    )
    if args.export and out["checkpoint"] is not None:
        export_ema(out["checkpoint"], args.export)
        print(f"wrote EMA weights of step {out['step']} to {args.export}")
    return out
