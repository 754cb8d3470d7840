"""Stage 2 (align) runner: project every image of a D/C/W layout exactly once (across ranks), resumably.

The batches are fixed from the whole input list before any work, so an interrupted run resumes to the
same bytes as a clean one, whatever the guidance norm: a batch with a missing output is recomputed whole
and only the gaps are written. Rank 0 claims the output sets and lists the work before anyone writes
(``sda.utils.dist.rank0_plan``); reading the next batch and writing the previous one overlap with the
projection. Each output set is a run folder (``sda.utils.runfolder``: a lock, and a key of every setting
that changes its pixels) with an ``align_manifest.json``.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch

from sda.align.config import AlignConfig
from sda.align.layout import ImageSet, Job, discover_jobs, image_sets, load_image
from sda.align.lowpass import make_lowpass
from sda.align.projection import predraw_noise, project
from sda.utils import dist
from sda.utils.checkpoint import cached_sha256, state_dict_sha256
from sda.utils.errors import require_finite
from sda.utils.images import tensor_to_pil, tile_grid
from sda.utils.io import check_disjoint, check_writable_dir, check_writable_file, save_image, write_json
from sda.utils.progress import log, progress
from sda.utils.runfolder import RunFolder, claimed, pending
from sda.utils.seed import image_seed, make_generator

MANIFEST = "align_manifest.json"
ALGORITHM = "align-2"  # the projection's version in run keys: bump it when a change alters the pixels
Batch = list[Job]


def run_key(cfg: AlignConfig, model_sha256: str, device_type: str) -> dict[str, Any]:
    """Every setting that changes a projected pixel. Batch size, precision, memory format, compilation and the
    device are in it: the batch norm couples a batch's images, and kernels round differently otherwise."""
    return {
        "algorithm": ALGORITHM,
        **asdict(cfg.projection),
        "timestep_respacing": cfg.timestep_respacing,
        "image_size": cfg.image_size,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "precision": cfg.precision,
        "channels_last": cfg.channels_last,
        "compile": cfg.compile and cfg.compile_mode,
        "device": device_type,
        "lossless": cfg.lossless,
        "model_sha256": model_sha256,
        "model_flags": dict(cfg.model_flags),
        **({"subset": cfg.subset.key()} if cfg.subset.active else {}),  # eval checks it (a whole set: no key)
    }


def plan_batches(sets: Sequence[ImageSet], cfg: AlignConfig) -> list[Batch]:
    """Every input of every set in sorted order, cut into fixed batches within each set (as the reference runs
    one folder at a time). The plan depends only on the inputs and settings, never on what exists or on the
    number of ranks, so a resumed run projects every batch exactly as a clean run does."""
    out: list[Batch] = []
    for s in sets:
        jobs = discover_jobs([s], cfg.lossless, cfg.num_samples, cfg.subset)
        out += [jobs[i : i + cfg.batch_size] for i in range(0, len(jobs), cfg.batch_size)]
    return out


def missing(batch: Batch) -> Batch:
    return pending(batch, lambda j: j.out)


def _manifest(s: ImageSet, batches: Sequence[Batch], settings: dict[str, Any], complete: bool, **extra: Any) -> dict:
    mine = [j for b in batches for j in b if j.out.parent.parent == s.out_dir]
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


def _plan(
    cfg: AlignConfig, sets: Sequence[ImageSet], folders: Sequence[RunFolder], settings: dict[str, Any]
) -> tuple[list[Batch], list[Batch]]:
    """Check every set's key, plan the batches, then claim the sets (locks taken, manifests written)."""
    for f in folders:
        f.check()
    batches = plan_batches(sets, cfg)
    todo = [b for b in batches if missing(b)]
    for s, f in zip(sets, folders, strict=True):
        f.claim(record=_manifest(s, batches, settings, complete=False))
    return batches, todo


def _load_batch(jobs: Sequence[Job], image_size: int, resize: str) -> torch.Tensor:
    return torch.stack([load_image(j.src, image_size, resize) for j in jobs])  # (B, 3, S, S)


def _save_missing(images: torch.Tensor, jobs: Sequence[Job]) -> None:
    """Write the projections whose file is missing (a resumed batch recomputes all, writes the gaps)."""
    for x, j in zip(images, jobs, strict=True):
        if not j.out.exists():
            save_image(tensor_to_pil(x), j.out)


def save_grid(rows: Sequence[torch.Tensor], path: str | os.PathLike) -> None:
    """A PNG of image rows (each (B, 3, H, W) in [-1, 1]): inputs / projections / their low-pass views."""
    save_image(tile_grid([[tensor_to_pil(x) for x in row] for row in rows], pad=2), path, format="PNG")


def run_jobs(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    batches: Sequence[Batch],
    cfg: AlignConfig,
    device: torch.device | str = "cpu",
    grid: str | os.PathLike | None = None,
    desc: str = "align",
) -> int:
    """Project this rank's planned batches, each whole; write the missing outputs.

    Reading the next batch and writing the previous one overlap with the projection. Returns the
    number of images written.
    """
    device = torch.device(device)
    lpf = make_lowpass(cfg.projection.lowpass, cfg.image_size, cfg.projection.D, device)
    written = 0
    with futures.ThreadPoolExecutor(max_workers=2) as pool, progress(total=sum(map(len, batches)), desc=desc) as bar:
        resize = "diffpure" if cfg.projection.guidance == "sde" else "adm"  # each protocol's own input transform
        next_load = pool.submit(_load_batch, batches[0], cfg.image_size, resize) if batches else None
        saves: list[futures.Future] = []
        for b, batch in enumerate(batches):
            ref = next_load.result().to(device)  # (B, 3, S, S)
            if b + 1 < len(batches):
                next_load = pool.submit(_load_batch, batches[b + 1], cfg.image_size, resize)
            gens = [make_generator(image_seed(cfg.seed, j.key)) for j in batch]
            if cfg.prenoise:  # every draw before the loop: the same values, a static step loop
                noise, steps = predraw_noise(ref.shape, gens, cfg.projection.steps, device)
                x = project(model, diffusion, ref, cfg.projection, noise=noise, step_noise=steps, lowpass=lpf)
            else:
                x = project(model, diffusion, ref, cfg.projection, generator=gens, lowpass=lpf)  # (B, 3, S, S)
            require_finite(x, f"the projector {cfg.model_path}")
            x = x.cpu()
            if grid is not None and b == 0:
                with torch.no_grad():
                    save_grid([ref.cpu(), x, lpf(ref).cpu(), lpf(x.to(device)).cpu()], grid)
            written += len(missing(batch))
            saves.append(pool.submit(_save_missing, x, batch))
            while saves and saves[0].done():
                saves.pop(0).result()  # surface write errors early
            bar.update(len(batch))
        for f in saves:
            f.result()
    return written


def check_outputs(cfg: AlignConfig, sets: Sequence[ImageSet]) -> None:
    """Before any work: the output folders are writable and do not overlap the inputs."""
    check_writable_dir(cfg.save_dir, "--save_dir")
    for s in sets:
        check_disjoint(s.in_dir, s.out_dir, "--base_samples", "--save_dir")
    if cfg.grid is not None:
        check_writable_file(cfg.grid, "--grid")


def project_folder(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    cfg: AlignConfig,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
    model_sha256: str | None = None,
) -> dict[str, Any]:
    """Project every image of ``cfg``'s layout exactly once (across ranks), resumably.

    ``model`` is ready to call (see ``sda.align.projection.prepare_model``), ``diffusion`` the respaced
    process. The batches are planned from the whole input list (``plan_batches``); with a process group,
    rank 0 claims the output sets and lists the batches with a missing output before anyone writes, and
    every rank takes its share of those batches. Ranks without a group (separate jobs sharing a folder,
    ``rank``/``world_size`` given) take their share of all batches and skip the complete ones. Writes
    ``align_manifest.json`` into each output set. ``model_sha256``: the projector's identity in the run key
    (its checkpoint file's hash; default: a hash of its weights). Returns a summary dict.
    """
    cfg.projection.check_against(cfg.image_size, diffusion.num_timesteps)
    grouped = dist.is_grouped()
    group_rank, group_world = dist.rank_and_world()
    rank = group_rank if rank is None else rank
    world_size = group_world if world_size is None else world_size
    if device is None:
        device = next(iter(model.parameters())).device if hasattr(model, "parameters") else "cpu"
    sets = image_sets(cfg.base_samples, cfg.save_dir, cfg.datatype, cfg.corruptions, cfg.severities)
    check_outputs(cfg, sets)
    key = run_key(cfg, model_sha256 or state_dict_sha256(model), torch.device(device).type)
    settings = {**key, "world_size": world_size, "datatype": cfg.datatype}
    folders = (
        [
            RunFolder(s.out_dir, key, MANIFEST, fix="use another --save_dir, or the same settings to resume")
            for s in sets
        ]
        if (grouped or rank == 0)
        else []
    )
    with claimed(folders):
        if folders:
            batches, todo = dist.rank0_plan(lambda: _plan(cfg, sets, folders, settings))
        else:
            batches = plan_batches(sets, cfg)
            todo = [b for b in batches if missing(b)]
        mine = (
            dist.shard(todo, rank, world_size)
            if grouped
            else [b for b in dist.shard(batches, rank, world_size) if missing(b)]
        )
        left = sum(len(missing(b)) for b in todo)
        images = sum(map(len, batches))
        log(
            f"align: {images} images in {len(sets)} set(s), {images - left} already done, "
            f"{left} to project ({len(todo)} batches) on {world_size} process(es)"
        )
        written = run_jobs(
            model, diffusion, mine, cfg, device, grid=cfg.grid if rank == 0 else None, desc=f"align {cfg.datatype}"
        )
        counts = dist.all_gather_object(written)
        dist.barrier()
        if rank == 0:
            for s in sets:
                write_json(s.out_dir / MANIFEST, _manifest(s, batches, settings, True, projected_this_run=sum(counts)))
    return {
        "images": images,
        "skipped": images - left,
        "written": written,
        "sets": [s.name for s in sets],
        "out_dirs": [str(s.out_dir) for s in sets],
    }


def load_projector(cfg: AlignConfig, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """The ADM of ``cfg.model_path`` (strict, safe), prepared for its precision, and its respaced diffusion."""
    from sda.align.projection import prepare_model
    from sda.diffusion.flags import create_diffusion_from_flags
    from sda.models.adm_flags import create_model, load_adm_checkpoint, model_kwargs

    diffusion = create_diffusion_from_flags(cfg.model_flags, cfg.timestep_respacing)
    model = create_model(**model_kwargs(cfg.model_flags))
    load_adm_checkpoint(model, cfg.model_path, allow_pickle=cfg.allow_pickle)
    model = prepare_model(
        model.to(device),
        cfg.precision,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        compile_mode=cfg.compile_mode,
    )
    return model, diffusion


def use_align_backend() -> None:
    """The CUDA settings align's command line runs with (and the GPU check measures): cuDNN autotuning for the
    loop's fixed shapes; TF32 as PyTorch's defaults (convolutions yes, matrix products no)."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False


def align(cfg: AlignConfig) -> dict[str, Any]:
    """The align stage as ``align/project.py`` runs it: one projector, one layout, any number of ranks."""
    info = dist.init_distributed(cfg.device)
    try:
        cfg = cfg.on_device(info.device.type)
        if cfg.model_flags.get("use_fp16") and cfg.precision != "fp16":
            log(f"align: --use_fp16 True but running in {cfg.precision} (fp16 is the default on CUDA only)")
        model, diffusion = load_projector(cfg, info.device)
        ident = cached_sha256(cfg.model_path)
        summary = project_folder(
            model, diffusion, cfg, rank=info.rank, world_size=info.world_size, device=info.device, model_sha256=ident
        )
        log(f"align: done, {summary['images']} images in {', '.join(summary['out_dirs'])}")
        return summary
    finally:
        dist.cleanup()
