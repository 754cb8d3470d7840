"""Stage 2 (align) runner: project every image of a D/C/W layout exactly once (across ranks), resumably.

Rank 0 lists the pending inputs before anyone writes (``sda.utils.dist.rank0_plan``) and every rank
projects its share in batches; reading the next batch and writing the previous one overlap with the
projection. Each output set is a run folder (``sda.utils.runfolder``) keyed by the settings that change
its pixels, with an ``align_manifest.json``.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sda.align.config import AlignConfig
from sda.align.layout import ImageSet, Job, discover_jobs, image_sets, load_image
from sda.align.lowpass import make_lowpass
from sda.align.projection import project
from sda.utils import dist
from sda.utils.images import tensor_to_pil, tile_grid
from sda.utils.io import save_image, write_json
from sda.utils.progress import log, progress
from sda.utils.runfolder import RunFolder, pending
from sda.utils.seed import image_seed, make_generator

MANIFEST = "align_manifest.json"
# Settings that change the projected pixels: a resumed run must not mix them.
RESULT_KEYS = ("N", "D", "scale", "guidance_norm", "timestep_respacing", "image_size", "seed", "model")


def _folder(s: ImageSet, settings: dict[str, Any]) -> RunFolder:
    key = {k: settings[k] for k in RESULT_KEYS if k in settings}
    return RunFolder(s.out_dir, key, MANIFEST, fix="use another --save_dir or delete that folder")


def _manifest(s: ImageSet, jobs: Sequence[Job], settings: dict[str, Any], complete: bool, **extra: Any) -> dict:
    mine = [j for j in jobs if j.out.parent.parent == s.out_dir]
    done = sum(j.out.exists() for j in mine)
    return {
        "stage": "align",
        "input": str(s.in_dir),
        "settings": settings,
        "images": len(mine),
        "written": done,
        "complete": complete and done == len(mine),
        **extra,
    }


def _plan(cfg: AlignConfig, sets: Sequence[ImageSet], settings: dict[str, Any]) -> tuple[list[Job], list[Job]]:
    """Check every set's key, list all jobs and the pending ones, then claim the sets (manifests written)."""
    folders = [_folder(s, settings) for s in sets]
    for f in folders:
        f.check()
    all_jobs = discover_jobs(sets, cfg.lossless, cfg.num_samples)
    todo = pending(all_jobs, lambda j: j.out)
    for s, f in zip(sets, folders, strict=True):
        f.claim(record=_manifest(s, all_jobs, settings, complete=False))
    return all_jobs, todo


def _load_batch(jobs: Sequence[Job], image_size: int) -> torch.Tensor:
    return torch.stack([load_image(j.src, image_size) for j in jobs])  # (B, 3, S, S)


def _save_batch(images: torch.Tensor, jobs: Sequence[Job]) -> None:
    for x, j in zip(images, jobs, strict=True):
        save_image(tensor_to_pil(x), j.out)


def save_grid(rows: Sequence[torch.Tensor], path: str | os.PathLike) -> None:
    """A PNG of image rows (each (B, 3, H, W) in [-1, 1]): inputs / projections / their low-pass views."""
    save_image(tile_grid([[tensor_to_pil(x) for x in row] for row in rows], pad=2), path, format="PNG")


def run_jobs(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    jobs: Sequence[Job],
    cfg: AlignConfig,
    device: torch.device | str = "cpu",
    grid: str | os.PathLike | None = None,
    desc: str = "align",
) -> int:
    """Project ``jobs`` (this rank's share) in batches of ``cfg.batch_size`` (the last may be smaller).

    Reading the next batch and writing the previous one overlap with the projection. Returns the
    number of images written.
    """
    device = torch.device(device)
    lpf = make_lowpass(cfg.projection.lowpass, cfg.image_size, cfg.projection.D, device)
    batches = [list(jobs[i : i + cfg.batch_size]) for i in range(0, len(jobs), cfg.batch_size)]
    written = 0
    with futures.ThreadPoolExecutor(max_workers=2) as pool, progress(total=len(jobs), desc=desc) as bar:
        next_load = pool.submit(_load_batch, batches[0], cfg.image_size) if batches else None
        saves: list[futures.Future] = []
        for b, batch in enumerate(batches):
            ref = next_load.result().to(device)  # (B, 3, S, S)
            if b + 1 < len(batches):
                next_load = pool.submit(_load_batch, batches[b + 1], cfg.image_size)
            gens = [make_generator(image_seed(cfg.seed, j.key)) for j in batch]
            x = project(model, diffusion, ref, cfg.projection, generator=gens, lowpass=lpf)  # (B, 3, S, S)
            x = x.cpu()
            if grid is not None and b == 0:
                with torch.no_grad():
                    save_grid([ref.cpu(), x, lpf(ref).cpu(), lpf(x.to(device)).cpu()], grid)
            saves.append(pool.submit(_save_batch, x, batch))
            while saves and saves[0].done():
                saves.pop(0).result()  # surface write errors early
            written += len(batch)
            bar.update(len(batch))
        for f in saves:
            f.result()
    return written


def project_folder(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    cfg: AlignConfig,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Project every image of ``cfg``'s layout exactly once (across ranks), resumably.

    ``model`` is ready to call (see ``sda.align.projection.prepare_model``), ``diffusion`` the respaced
    process. With a process group, rank 0 lists the pending inputs before anyone writes and every rank
    shards that same list. Ranks without a group (separate jobs sharing a folder, ``rank``/``world_size``
    given) cannot agree on a pending list, so each takes its share of the full sorted list and skips what
    exists. Writes ``align_manifest.json`` into each output set. Returns a summary dict.
    """
    cfg.projection.check_against(cfg.image_size, diffusion.num_timesteps)
    grouped = dist.is_grouped()
    group_rank, group_world = dist.rank_and_world()
    rank = group_rank if rank is None else rank
    world_size = group_world if world_size is None else world_size
    if device is None:
        device = next(iter(model.parameters())).device if hasattr(model, "parameters") else "cpu"
    sets = image_sets(cfg.base_samples, cfg.save_dir, cfg.datatype, cfg.corruptions, cfg.severities)
    settings = cfg.settings(world_size)
    if grouped or rank == 0:
        all_jobs, todo = dist.rank0_plan(lambda: _plan(cfg, sets, settings))
    else:
        all_jobs = discover_jobs(sets, cfg.lossless, cfg.num_samples)
        todo = pending(all_jobs, lambda j: j.out)
    mine = (
        dist.shard(todo, rank, world_size)
        if grouped
        else pending(dist.shard(all_jobs, rank, world_size), lambda j: j.out)
    )
    log(
        f"align: {len(all_jobs)} images in {len(sets)} set(s), {len(all_jobs) - len(todo)} already done, "
        f"{len(todo)} to project on {world_size} process(es)"
    )
    written = run_jobs(
        model, diffusion, mine, cfg, device, grid=cfg.grid if rank == 0 else None, desc=f"align {cfg.datatype}"
    )
    counts = dist.all_gather_object(written)
    dist.barrier()
    if rank == 0:
        for s in sets:
            write_json(s.out_dir / MANIFEST, _manifest(s, all_jobs, settings, True, projected_this_run=sum(counts)))
    return {
        "images": len(all_jobs),
        "skipped": len(all_jobs) - len(todo),
        "written": written,
        "sets": [s.name for s in sets],
        "out_dirs": [str(s.out_dir) for s in sets],
    }


def load_projector(cfg: AlignConfig, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """The ADM of ``cfg.model_path`` (strict, safe), prepared for its precision, and its respaced diffusion."""
    from sda.align.projection import prepare_model
    from sda.models.adm_flags import (
        create_diffusion_from_flags,
        create_model,
        load_adm_checkpoint,
        model_kwargs,
    )

    diffusion = create_diffusion_from_flags(cfg.model_flags, cfg.timestep_respacing)
    model = create_model(**model_kwargs(cfg.model_flags))
    load_adm_checkpoint(model, cfg.model_path, allow_pickle=cfg.allow_pickle)
    model = prepare_model(model.to(device), cfg.precision, channels_last=cfg.channels_last, compile=cfg.compile)
    return model, diffusion


def align(cfg: AlignConfig) -> dict[str, Any]:
    """The align stage as ``align/project.py`` runs it: one projector, one layout, any number of ranks."""
    info = dist.init_distributed(cfg.device)
    try:
        cfg = cfg.resolved(info.device.type)
        if cfg.model_flags.get("use_fp16") and cfg.precision != "fp16":
            log(f"align: --use_fp16 True but running in {cfg.precision} (fp16 is the default on CUDA only)")
        model, diffusion = load_projector(cfg, info.device)
        summary = project_folder(model, diffusion, cfg, rank=info.rank, world_size=info.world_size, device=info.device)
        log(f"align: done, {summary['images']} images in {', '.join(summary['out_dirs'])}")
        return summary
    finally:
        dist.cleanup()
