"""Stage 2 (align) data: the D/C/W folder layouts, input preprocessing, outputs, and the runner.

Layouts (inputs under ``--base_samples``, outputs under ``--save_dir``), as SDA's align.sh uses them:

    D  <base_samples>/<class>/<image>             -> <save_dir>/DiT-Syn/<class>/<image>
    C  <base_samples>/<corruption>/<severity>/<wnid>/<image>
                            -> <save_dir>/ImageNet-C-Syn/<corruption>/<severity>/<wnid>/<image>
    W  <base_samples>/val/<wnid>/<image>          -> <save_dir>/ImageNet-W-Syn/val/<wnid>/<image>

Every output keeps its input's relative path and file name, so the format follows the extension
(JPEG at PIL's default quality, PNG lossless) as in the reference; ``lossless`` writes PNG with the
same stem. Each image's noise comes from its own generator seeded by ``image_seed(seed, key)`` with
``key`` its path relative to ``base_samples``: results do not depend on the number of processes.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sda.projection import GUIDANCE_NORMS, LowPass, check_downsample, lowpass_resize_right, project, to_uint8
from sda.utils import dist
from sda.utils.errors import UserError
from sda.utils.io import load_rgb, save_image, write_json
from sda.utils.progress import log, progress
from sda.utils.seed import image_seed, make_generator

DATATYPES = ("D", "C", "W")
SYN_ROOTS = {"D": "DiT-Syn", "C": "ImageNet-C-Syn", "W": "ImageNet-W-Syn"}
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
MANIFEST = "align_manifest.json"
# Settings that change the projected pixels: a resumed run must not mix them.
RESULT_KEYS = ("N", "D", "scale", "guidance_norm", "timestep_respacing", "image_size", "seed", "model")
PATTERNS = {
    "D": "<base_samples>/<class>/<image>.png",
    "C": "<base_samples>/<corruption>/<severity>/<wnid>/<image>.JPEG",
    "W": "<base_samples>/val/<wnid>/<image>.JPEG",
}


# ----------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class ImageSet:
    """One input folder of a layout and its output folder (both hold ``<folder>/<image>`` files)."""

    name: str  # "DiT-Syn", "gaussian_noise/5", "val"
    in_dir: Path
    out_dir: Path
    key_prefix: str  # in_dir relative to base_samples, for the per-image seeds


@dataclass(frozen=True)
class Job:
    """One image to project: where it is read, where it is written, and its seed key."""

    src: Path
    out: Path
    key: str


def parse_corruptions(value: str | Sequence[str] | None) -> list[str]:
    """ "all" -> the 15 ImageNet-C corruptions; "a,b" -> [a, b]."""
    if value is None or value == "" or value == []:
        raise UserError("datatype C needs --corruption NAME (or a comma list, or 'all')")
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names if n.strip()]
    return list(CORRUPTIONS) if names == ["all"] else names


def parse_severities(value: str | int | Sequence[int]) -> list[int]:
    """5 or "5" or "3,5" or [3, 5] -> [3, 5]; ImageNet-C severities are 1..5."""
    if isinstance(value, int):
        values = [value]
    elif isinstance(value, str):
        try:
            values = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"bad --severity {value!r}: use integers 1-5, e.g. 5 or 3,5") from None
    else:
        values = [int(v) for v in value]
    if not values or any(not 1 <= v <= 5 for v in values):
        raise UserError(f"bad --severity {value!r}: use integers 1-5, e.g. 5 or 3,5")
    return values


def image_sets(
    base_samples: str | os.PathLike,
    save_dir: str | os.PathLike,
    datatype: str,
    corruptions: Sequence[str] = (),
    severities: Sequence[int] = (5,),
) -> list[ImageSet]:
    """The input/output folder pairs of a run; a missing input folder is a UserError naming the layout."""
    base, out_root = Path(base_samples), Path(save_dir) / SYN_ROOTS.get(datatype, "")
    if datatype not in DATATYPES:
        raise UserError(f"--datatype {datatype!r}: use D (DiT synthetic set), C (ImageNet-C) or W (ImageNet-W)")
    if not base.is_dir():
        raise UserError(f"--base_samples {base} does not exist; expected {PATTERNS[datatype]}")
    if datatype == "D":
        sets = [ImageSet(SYN_ROOTS["D"], base, out_root, "")]
    elif datatype == "W":
        sets = [ImageSet("val", base / "val", out_root / "val", "val")]
    else:
        sets = [
            ImageSet(f"{c}/{s}", base / c / str(s), out_root / c / str(s), f"{c}/{s}")
            for c in corruptions
            for s in severities
        ]
    for s in sets:
        if not s.in_dir.is_dir():
            hint = ""
            if datatype == "C" and any(p.is_dir() for p in base.iterdir() if p.name.startswith("n")):
                hint = " (--base_samples looks like one severity folder; pass the ImageNet-C root)"
            raise UserError(
                f"input folder {s.in_dir} not found: datatype {datatype} expects {PATTERNS[datatype]}{hint}"
            )
        if s.in_dir.resolve() == s.out_dir.resolve():
            raise UserError(
                f"input and output folder are both {s.in_dir}: the projections would replace "
                f"the inputs; point --save_dir elsewhere (outputs go to <save_dir>/{SYN_ROOTS[datatype]})"
            )
    return sets


def list_set(s: ImageSet) -> list[str]:
    """Sorted ``<folder>/<image>`` paths of a set; images at other depths are not part of the layout."""
    exts = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
    rels = []
    for folder in sorted(p for p in s.in_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rels += [
            f"{folder.name}/{f.name}"
            for f in sorted(folder.iterdir())
            if f.is_file() and f.name.lower().endswith(exts) and not f.name.startswith(".")
        ]
    return rels


def output_name(rel: str, lossless: bool) -> str:
    """Same relative path and name; PNG with the same stem when ``lossless``."""
    return str(Path(rel).with_suffix(".png")) if lossless else rel


def discover_jobs(sets: Sequence[ImageSet], lossless: bool = False, num_samples: int | None = None) -> list[Job]:
    """All jobs of the sets in sorted order; ``num_samples`` caps each set (the first ones in order)."""
    jobs: list[Job] = []
    for s in sets:
        rels = list_set(s)
        if not rels:
            raise UserError(
                f"no images in {s.in_dir}: expected <folder>/<image> files below it "
                f"(layout {s.in_dir}/<wnid or class>/<image>)"
            )
        if num_samples is not None:
            rels = rels[:num_samples]
        for rel in rels:
            key = f"{s.key_prefix}/{rel}" if s.key_prefix else rel
            jobs.append(Job(s.in_dir / rel, s.out_dir / output_name(rel, lossless), key))
    return jobs


def pending_jobs(jobs: Iterable[Job]) -> list[Job]:
    """The jobs whose output does not exist yet (outputs are atomic: present means complete)."""
    return [j for j in jobs if not j.out.exists()]


# ----------------------------------------------------------------------------- pixels
def center_crop_arr(img: Image.Image, image_size: int) -> np.ndarray:
    """guided-diffusion's preprocessing: halve with BOX while the short side >= 2 * image_size, BICUBIC
    so the short side is image_size (Python rounding), center crop. Returns (H, W, 3) uint8."""
    while min(*img.size) >= 2 * image_size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = image_size / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.array(img)  # (H, W, 3)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top : top + image_size, left : left + image_size]


def load_image(path: str | os.PathLike, image_size: int) -> torch.Tensor:
    """An image file as the reference feeds it: (3, S, S) float32 in [-1, 1]."""
    arr = center_crop_arr(load_rgb(path), image_size).astype(np.float32) / 127.5 - 1  # (S, S, 3)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, S, S)


def to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB PIL image with the reference's pixel mapping."""
    return Image.fromarray(to_uint8(x).permute(1, 2, 0).cpu().numpy())


def make_grid(rows: Sequence[torch.Tensor], pad: int = 2) -> Image.Image:
    """A PNG-ready grid: one row per (B, 3, H, W) tensor in [-1, 1], images side by side."""
    B, _, H, W = rows[0].shape
    canvas = torch.ones(3, len(rows) * (H + pad) + pad, B * (W + pad) + pad)  # white background
    for r, batch in enumerate(rows):
        for b in range(B):
            y, x = pad + r * (H + pad), pad + b * (W + pad)
            canvas[:, y : y + H, x : x + W] = batch[b].detach().float().cpu()
    return to_pil(canvas)


# ----------------------------------------------------------------------------- the runner
def _check_manifest(out_dir: Path, settings: dict[str, Any]) -> None:
    path = out_dir / MANIFEST
    if not path.is_file():
        return
    import json

    try:
        old = json.loads(path.read_text()).get("settings", {})
    except (OSError, ValueError):
        return
    changed = [k for k in RESULT_KEYS if k in old and k in settings and old[k] != settings[k]]
    if changed:
        what = ", ".join(f"{k}: {old[k]!r} -> {settings[k]!r}" for k in changed)
        raise UserError(
            f"{out_dir} holds outputs made with other settings ({what}); use another --save_dir or delete that folder"
        )


def _write_manifests(
    sets: Sequence[ImageSet],
    jobs: Sequence[Job],
    settings: dict[str, Any],
    complete: bool,
    projected: int | None = None,
) -> None:
    for s in sets:
        mine = [j for j in jobs if j.out.parent.parent == s.out_dir]
        done = sum(j.out.exists() for j in mine)
        write_json(
            s.out_dir / MANIFEST,
            {
                "stage": "align",
                "input": str(s.in_dir),
                "settings": settings,
                "images": len(mine),
                "written": done,
                "complete": complete and done == len(mine),
                **({"projected_this_run": projected} if projected is not None else {}),
            },
        )


def _load_batch(jobs: Sequence[Job], image_size: int) -> torch.Tensor:
    return torch.stack([load_image(j.src, image_size) for j in jobs])  # (B, 3, S, S)


def _save_batch(images: torch.Tensor, jobs: Sequence[Job]) -> None:
    for x, j in zip(images, jobs):
        save_image(to_pil(x), j.out)


def run_jobs(
    model: Callable[..., torch.Tensor],
    diffusion: Any,
    jobs: Sequence[Job],
    *,
    image_size: int,
    batch_size: int = 10,
    N: int = 50,
    D: int = 4,
    scale: float = 6.0,
    guidance_norm: str = "batch",
    seed: int = 0,
    device: torch.device | str = "cpu",
    lowpass: str = "matrix",
    clip_denoised: bool = True,
    grid: str | os.PathLike | None = None,
    desc: str = "align",
) -> int:
    """Project ``jobs`` (this rank's share) in batches of ``batch_size`` (the last may be smaller).

    Reading the next batch and writing the previous one overlap with the projection. Returns the
    number of images written.
    """
    device = torch.device(device)
    lpf = LowPass(image_size, image_size, D, device) if lowpass == "matrix" else (lambda x: lowpass_resize_right(x, D))
    batches = [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]
    written = 0
    with futures.ThreadPoolExecutor(max_workers=2) as pool, progress(total=len(jobs), desc=desc) as bar:
        next_load = pool.submit(_load_batch, batches[0], image_size) if batches else None
        saves: list[futures.Future] = []
        for b, batch in enumerate(batches):
            ref = next_load.result().to(device)  # (B, 3, S, S)
            if b + 1 < len(batches):
                next_load = pool.submit(_load_batch, batches[b + 1], image_size)
            gens = [make_generator(image_seed(seed, j.key)) for j in batch]
            x = project(
                model,
                diffusion,
                ref,
                N=N,
                D=D,
                scale=scale,
                guidance_norm=guidance_norm,
                generator=gens,
                lowpass=lpf,
                clip_denoised=clip_denoised,
            )  # (B, 3, S, S)
            x = x.cpu()
            if grid is not None and b == 0:
                with torch.no_grad():
                    rows = [ref.cpu(), x, lpf(ref).cpu(), lpf(x.to(device)).cpu()]
                save_image(make_grid(rows), grid, format="PNG")
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
    *,
    base_samples: str | os.PathLike,
    save_dir: str | os.PathLike,
    datatype: str,
    image_size: int,
    corruptions: str | Sequence[str] | None = None,
    severities: str | int | Sequence[int] = 5,
    batch_size: int = 10,
    N: int = 50,
    D: int = 4,
    scale: float = 6.0,
    guidance_norm: str = "batch",
    seed: int = 0,
    num_samples: int | None = None,
    lossless: bool = False,
    grid: str | os.PathLike | None = None,
    lowpass: str = "matrix",
    clip_denoised: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Project every image of a D/C/W layout exactly once (across ranks), resumably.

    ``model`` is ready to call (see ``sda.projection.prepare_model``), ``diffusion`` the respaced
    process. Pending inputs (sorted; outputs that exist are skipped) are listed by rank 0 and split
    ``pending[rank::world_size]``; ``rank``/``world_size`` default to the torch.distributed group (or
    0/1). Writes ``align_manifest.json`` into each output set. Returns a summary dict.
    """
    if guidance_norm not in GUIDANCE_NORMS:
        raise UserError(f"--guidance-norm {guidance_norm!r}: use batch (reference) or sample (per image)")
    if batch_size < 1:
        raise UserError(f"--batch_size {batch_size}: must be at least 1")
    try:
        check_downsample(image_size, D)
    except ValueError as e:
        raise UserError(f"--D {D} with --image_size {image_size}: {e}") from None
    if not 0 < N <= diffusion.num_timesteps:
        raise UserError(
            f"--N {N} must be in [1, {diffusion.num_timesteps}] (the respaced steps of --timestep_respacing)"
        )
    if torch.distributed.is_initialized():
        rank = torch.distributed.get_rank() if rank is None else rank
        world_size = torch.distributed.get_world_size() if world_size is None else world_size
    rank, world_size = rank or 0, world_size or 1
    if device is None:
        device = next(iter(model.parameters())).device if hasattr(model, "parameters") else "cpu"
    corr = parse_corruptions(corruptions) if datatype == "C" else []
    sevs = parse_severities(severities) if datatype == "C" else []
    sets = image_sets(base_samples, save_dir, datatype, corr, sevs)
    settings = {
        "N": N,
        "D": D,
        "scale": scale,
        "guidance_norm": guidance_norm,
        "image_size": image_size,
        "seed": seed,
        "batch_size": batch_size,
        "world_size": world_size,
        "lossless": lossless,
        **(settings or {}),
    }

    # With a process group, rank 0 lists the pending inputs before anyone writes and every rank
    # shards that same list. Ranks without a group (separate jobs sharing a folder) cannot agree on a
    # pending list, so each takes its share of the full sorted list and skips what exists.
    grouped = torch.distributed.is_initialized()
    plan = None
    if rank == 0:
        try:
            for s in sets:
                _check_manifest(s.out_dir, settings)
            all_jobs = discover_jobs(sets, lossless, num_samples)
            plan = (all_jobs, pending_jobs(all_jobs))
            _write_manifests(sets, all_jobs, settings, complete=False)
        except UserError as e:
            if not grouped:
                raise
            plan = e  # every rank raises it below instead of waiting for rank 0
    if grouped:
        plan = dist.all_gather_object(plan)[0]
        if isinstance(plan, UserError):
            raise plan
        all_jobs, pending = plan
        mine = dist.shard(pending, rank, world_size)
    else:
        all_jobs, pending = plan if plan is not None else (discover_jobs(sets, lossless, num_samples), None)
        pending = pending_jobs(all_jobs) if pending is None else pending
        mine = pending_jobs(dist.shard(all_jobs, rank, world_size))
    log(
        f"align: {len(all_jobs)} images in {len(sets)} set(s), {len(all_jobs) - len(pending)} already done, "
        f"{len(pending)} to project on {world_size} process(es)"
    )
    written = run_jobs(
        model,
        diffusion,
        mine,
        image_size=image_size,
        batch_size=batch_size,
        N=N,
        D=D,
        scale=scale,
        guidance_norm=guidance_norm,
        seed=seed,
        device=device,
        lowpass=lowpass,
        clip_denoised=clip_denoised,
        grid=grid if rank == 0 else None,
        desc=f"align {datatype}",
    )
    counts = dist.all_gather_object(written) if torch.distributed.is_initialized() else [written]
    dist.barrier()
    if rank == 0:
        _write_manifests(sets, all_jobs, settings, complete=True, projected=sum(counts))
    return {
        "images": len(all_jobs),
        "skipped": len(all_jobs) - len(pending),
        "written": written,
        "sets": [s.name for s in sets],
        "out_dirs": [str(s.out_dir) for s in sets],
    }
