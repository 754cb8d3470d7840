"""``align/project.py --plan``: the work of an align run before it starts, and its time from a measured speed.

Counts the images of the layout (the subset's only), those already projected (a rerun resumes), the model
steps per image (DDA: N guided steps, each a UNet forward and backward; DiffPure: forwards only) and their
total; the time comes from ``benchmarks/bench_align.py``'s measurement on this machine (``sda.utils.throughput``),
never from a figure measured elsewhere.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sda.align.config import AlignConfig
from sda.align.layout import discover_jobs, image_sets
from sda.utils import throughput
from sda.utils.errors import UserError
from sda.utils.plan import count, duration, planned_images


def projector_params(model_flags: dict[str, Any]) -> int:
    """The UNet's parameter count, from its flags (built on the meta device: no memory, no weights)."""
    from sda.models.adm_flags import create_model, model_kwargs

    with torch.device("meta"):
        model = create_model(**model_kwargs(model_flags))
    return sum(p.numel() for p in model.parameters())


def align_plan(cfg: AlignConfig, processes: int = 1) -> dict[str, Any]:
    """The plan of ``cfg``'s run on ``processes`` GPUs (or CPU processes) as a dict, printed as lines; a missing
    input (the layout, the projector's checkpoint) that no earlier stage of this run makes is a UserError."""
    if not Path(cfg.model_path).is_file() and planned_images(cfg.model_path) is None:
        raise UserError(f"--model_path {cfg.model_path} not found; fetch it with scripts/download_ckpt.sh")
    made_earlier = None if Path(cfg.base_samples).exists() else planned_images(cfg.base_samples)
    if made_earlier is not None:
        sets, images, done = 1, made_earlier, 0
    else:
        layout = image_sets(cfg.base_samples, cfg.save_dir, cfg.datatype, cfg.corruptions, cfg.severities)
        jobs = discover_jobs(layout, cfg.lossless, cfg.num_samples, cfg.subset)
        sets, images, done = len(layout), len(jobs), sum(j.out.exists() for j in jobs)
    todo = images - done
    p = cfg.projection
    steps, grad = p.steps, p.guidance == "lowpass"
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = cfg.resolved(device.type).precision or "fp32"
    params = projector_params(cfg.model_flags) if cfg.model_flags else 0
    kind = throughput.StepKind(throughput.device_name(device), cfg.image_size, params, precision, grad)
    measured = throughput.lookup(kind, cfg.batch_size) or (
        None if grad else throughput.lookup(replace(kind, grad=True), cfg.batch_size)  # an upper bound
    )
    plan = {
        "datatype": cfg.datatype,
        "sets": sets,
        "images": images,
        "done": done,
        "todo": todo,
        "subset": cfg.subset.key(),
        "steps_per_image": steps,
        "forwards": todo * steps,
        "backwards": todo * steps if grad else 0,
        "processes": processes,
        "device": kind.device,
        "precision": precision,
        "params": params,
        "measured": measured,
        "seconds": None,
        "upper_bound": bool(measured) and measured["grad"] != grad,
        "made_earlier": made_earlier is not None,
    }
    if measured:
        plan["seconds"] = todo * steps * measured["seconds_per_image_step"] / processes
    print_plan(cfg, plan)
    return plan


def _method(cfg: AlignConfig) -> str:
    p = cfg.projection
    if p.guidance == "lowpass":
        return (
            f"DDA's guided projection, N {p.N} of {cfg.timestep_respacing} respaced steps, D {p.D}, scale {p.scale:g}"
        )
    if p.guidance == "sde":
        return f"DiffPure's reverse SDE from t* = {p.N} of 1000, dt {p.sde_dt:g}"
    return f"DiffPure's DDPM runner, {p.N} unguided steps of {cfg.timestep_respacing}"


def print_plan(cfg: AlignConfig, plan: dict[str, Any]) -> None:
    sub = plan["subset"]
    what = f"{plan['sets']} set(s)" + (f", {sub['per_class']} per class (seed {sub['seed']})" if sub else "")
    lines = [f"align plan ({cfg.datatype}: {cfg.base_samples} -> {cfg.save_dir}):"]
    if plan["made_earlier"]:
        lines.append(f"  images: {count(plan['images'])} to be made by an earlier stage of this run")
    else:
        lines.append(
            f"  images: {count(plan['images'])} in {what}; {count(plan['done'])} already projected; "
            f"{count(plan['todo'])} to project"
        )
    back = " and as many backward passes" if plan["backwards"] else ""
    lines.append(f"  per image: {plan['steps_per_image']} model steps ({_method(cfg)})")
    lines.append(
        f"  total: {count(plan['forwards'])} UNet forwards{back} ({cfg.image_size} px, "
        f"{plan['params'] / 1e6:.1f}M parameters, {plan['precision']})"
    )
    m = plan["measured"]
    if m:
        bound = "at most " if plan["upper_bound"] else ""
        lines.append(
            f"  time: {bound}{duration(plan['seconds'])} on {plan['processes']} process(es) of {plan['device']}, from "
            f"{m['seconds_per_image_step']:.4g} s per image and step (batch {m['batch_size']}, measured "
            f"{m['measured']}{', a guided step: an upper bound' if plan['upper_bound'] else ''})"
        )
    else:
        preset = "adm256" if cfg.image_size == 256 else "mini"
        lines.append(
            f"  time: no speed measured for {plan['device']} ({plan['precision']}): run `python "
            f"benchmarks/bench_align.py --preset {preset} --precision {plan['precision']} --batch_size "
            f"{cfg.batch_size}` on this machine once (it records the speed), then plan again"
        )
    print("\n".join(lines), flush=True)
