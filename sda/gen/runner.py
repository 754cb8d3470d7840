"""Stage 1 (gen): class-conditional synthesis of a labelled image set with DiT (or a class-conditional ADM).

Every image is keyed by (class, index) and drawn with its own CPU generator seeded by
``image_seed(global_seed, class, index)``: its initial noise and every step's noise depend only on
that key, never on the batch size, the number of processes or the order of work. The set is
``<root>/<class:04d>/<index:06d>.png`` with exactly ``images_per_class`` images per requested class.
Work is sharded over torchrun ranks; finished PNGs are skipped on a rerun; every file is written
to a temporary name and renamed, so an interrupted run leaves complete images only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sda.gen.config import GenConfig
from sda.gen.sampler import Sampler, build_sampler
from sda.utils import dist as sdist
from sda.utils.checkpoint import cached_sha256, content_sha256
from sda.utils.errors import UserError
from sda.utils.images import tile_grid
from sda.utils.io import load_rgb, save_image, write_json
from sda.utils.progress import log, progress
from sda.utils.provenance import versions
from sda.utils.runfolder import RunFolder, pending
from sda.utils.seed import image_seed

MANIFEST = "manifest.json"
GRID_SUFFIX = "_grid.png"  # the sample grid lies beside the root, so it never looks like a class image
LAYOUT = "<class:04d>/<index:06d>.png"


def image_path(root: str | os.PathLike, cls: int, index: int) -> Path:
    return Path(root) / f"{cls:04d}" / f"{index:06d}.png"


def grid_path(root: str | os.PathLike) -> Path:
    root = Path(root)
    return root.parent / f"{root.name}{GRID_SUFFIX}"


Item = tuple[int, int]  # (class, index)


def plan_batches(classes: Sequence[int], images_per_class: int, batch_size: int) -> list[list[Item]]:
    """Every (class, index) of the set, class-major, cut into fixed batches. The plan depends only on the
    settings, never on what exists or on the number of ranks, so a resumed run computes every batch exactly
    as a clean run does."""
    items = [(c, j) for c in classes for j in range(images_per_class)]
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def missing(root: str | os.PathLike, batch: Sequence[Item]) -> list[Item]:
    """The items of a batch whose PNG is not there yet (outputs are atomic: present means complete)."""
    return pending(batch, lambda item: image_path(root, *item))


def count_images(root: str | os.PathLike) -> dict[str, int]:
    """PNG count per class folder."""
    root = Path(root)
    return {d.name: sum(1 for f in d.glob("*.png")) for d in sorted(root.iterdir()) if d.is_dir() and d.name.isdigit()}


def make_grid(root: str | os.PathLike, classes: Sequence[int], images_per_class: int, size: int = 8) -> Image.Image:
    """A grid of up to ``size`` classes (rows) x ``size`` images (columns), for a quick look."""
    cols = min(size, images_per_class)
    return tile_grid([[load_rgb(image_path(root, c, j)) for j in range(cols)] for c in classes[:size]])


def _manifest(cfg: GenConfig, root: Path, settings: dict[str, Any], info: sdist.DistInfo) -> dict[str, Any]:
    return {
        "stage": "gen",
        "status": "running",
        "root": str(root),
        "layout": LAYOUT,
        "seed_rule": "per image: torch CPU generator seeded with sda.utils.seed.image_seed(global_seed, class, index)",
        "settings": settings,
        "checkpoint": {"path": str(cfg.checkpoint), "sha256": settings["ckpt_sha256"]},
        "vae_path": cfg.vae_folder,
        "classes": cfg.classes or f"0-{cfg.num_classes - 1}",
        "num_requested_classes": len(cfg.class_list),
        "images_per_class": cfg.images_per_class,
        "run": {
            "world_size": info.world_size,
            "device": str(info.device),
            "per_proc_batch_size": cfg.per_proc_batch_size,
            "command": " ".join(sys.argv),
        },
        "versions": versions("sda-tta", "diffusers"),
    }


def run_key(cfg: GenConfig, device: torch.device) -> dict[str, Any]:
    """The settings key of the output folder (content hashes of the weights, cached by size and mtime)."""
    vae = None if cfg.vae_folder is None else content_sha256(cfg.vae_folder)
    return cfg.pixel_settings(cached_sha256(cfg.checkpoint), vae, device.type)


def _plan(cfg: GenConfig, folder: RunFolder, info: sdist.DistInfo) -> tuple[list[list[Item]], dict[str, Any]]:
    """Rank 0: claim the folder with the run key, list the batches with a missing image, write the manifest."""
    manifest = _manifest(cfg, folder.root, folder.key, info)
    removed = folder.claim(record=manifest)
    batches = plan_batches(cfg.class_list, cfg.images_per_class, cfg.per_proc_batch_size)
    todo = [b for b in batches if missing(folder.root, b)]
    left = sum(len(missing(folder.root, b)) for b in todo)
    log(
        f"gen: {folder.root} - {len(cfg.class_list)} classes x {cfg.images_per_class} images, {left} to make "
        f"({len(todo)} batches) on {info.world_size} process(es)"
        + (f", removed {removed} partial files" if removed else "")
    )
    return todo, manifest


def _finish(cfg: GenConfig, root: Path, manifest: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Rank 0: counts, grid and the complete manifest; a class left short is an error."""
    manifest.update(status="complete", counts=count_images(root), seconds=round(seconds, 1))
    manifest["total"] = sum(manifest["counts"].values())
    if cfg.grid_size > 0:
        save_image(make_grid(root, cfg.class_list, cfg.images_per_class, cfg.grid_size), grid_path(root))
        manifest["grid"] = str(grid_path(root))
    write_json(root / MANIFEST, manifest)
    short = [c for c in cfg.class_list if manifest["counts"].get(f"{c:04d}", 0) < cfg.images_per_class]
    if short:
        raise UserError(
            f"{len(short)} classes have fewer than {cfg.images_per_class} images (e.g. {short[:3]}); "
            "rerun the same command"
        )
    log(f"gen: done, {manifest['total']} images in {root} ({manifest['seconds']} s)")
    return manifest


@torch.no_grad()  # scoped: the caller's autograd state is left as it was
def generate(cfg: GenConfig) -> dict[str, Any]:
    """Run Stage 1; returns the manifest (rank 0) or {} (other ranks)."""
    info = sdist.init_distributed(cfg.device)
    torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
    start = time.time()
    folder = None
    try:
        sampler = build_sampler(cfg, info.device)
        root = cfg.output_root()
        if info.rank == 0:
            fix = "use another --out-dir/--sample-dir, or the same settings to resume"
            folder = RunFolder(root, run_key(cfg, info.device), MANIFEST, fix=fix)
        todo, manifest = sdist.rank0_plan(lambda: _plan(cfg, folder, info))
        mine = sdist.shard(todo, info.rank, info.world_size)
        with progress(total=sum(map(len, mine)), desc=f"gen (rank 0 of {info.world_size})", unit="img") as bar:
            for batch in mine:
                write_batch(sampler, cfg, root, batch)
                bar.update(len(batch))
        sdist.barrier()
        if info.rank != 0:
            return {}
        return _finish(cfg, root, manifest, time.time() - start)
    finally:
        if folder is not None:
            folder.release()
        sdist.cleanup()


def write_batch(sampler: Sampler, cfg: GenConfig, root: Path, batch: Sequence[Item]) -> None:
    """Sample a whole planned batch (as a clean run would) and write the images that are missing."""
    todo = set(missing(root, batch))
    seeds = [image_seed(cfg.global_seed, c, j) for c, j in batch]
    images = sampler.sample([c for c, _ in batch], seeds).numpy()  # (B, H, W, 3)
    for (c, j), img in zip(batch, images, strict=True):
        if (c, j) in todo:
            save_image(Image.fromarray(img), image_path(root, c, j))
