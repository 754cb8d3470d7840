"""Stage 1 (gen) before and after: ``gen/sample.py --plan`` (the work before it starts) and the hand-off to align
(``find_output``: the synthetic set a completed gen run left, found through its manifest, not guessed from a name).

    python -m sda.gen.plan find-output DATA      # prints the one complete gen folder under DATA, or fails naming why
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sda.gen.config import GenConfig
from sda.gen.runner import MANIFEST, image_path
from sda.utils.errors import UserError
from sda.utils.plan import count, planned_images


def gen_plan(cfg: GenConfig) -> dict[str, Any]:
    """Images to make, model forwards and VAE decodes; the checkpoint and VAE must exist (or be made earlier)."""
    for path, what in ((cfg.checkpoint, "--ckpt"), (cfg.vae_folder, "--vae-path")):
        if path is not None and not Path(path).exists() and planned_images(path) is None:
            raise UserError(f"{what} {path} not found; fetch it with scripts/download_ckpt.sh")
    root = cfg.output_root()
    items = [(c, j) for c in cfg.class_list for j in range(cfg.images_per_class)]
    done = sum(image_path(root, c, j).is_file() for c, j in items) if root.is_dir() else 0
    todo = len(items) - done
    per_step = 2 if cfg.cfg_scale > 1.0 else 1  # classifier-free guidance runs the batch twice (cond + null)
    plan = {
        "output": str(root),
        "images": len(items),
        "done": done,
        "todo": todo,
        "steps_per_image": cfg.num_sampling_steps,
        "forwards": todo * cfg.num_sampling_steps * per_step,
        "vae_decodes": 0 if cfg.no_vae else todo,
    }
    lines = [
        f"gen plan ({cfg.model}, {cfg.image_size} px, cfg {cfg.cfg_scale:g}):",
        f"  output: {root}",
        f"  images: {count(len(items))} ({len(cfg.class_list)} classes x {cfg.images_per_class}); "
        f"{count(done)} already made; {count(todo)} to make",
        f"  per image: {cfg.num_sampling_steps} DDPM steps x {per_step} model forward(s)"
        + ("" if cfg.no_vae else " and one VAE decode"),
        f"  total: {count(plan['forwards'])} model forwards" + ("" if cfg.no_vae else f", {count(todo)} VAE decodes"),
    ]
    print("\n".join(lines), flush=True)
    return plan


def find_output(sample_dir: str | Path) -> Path:
    """The folder of the one complete gen run under ``sample_dir`` (its ``manifest.json`` says stage gen and status
    complete); none, an unfinished one, or several are a UserError saying what to do."""
    root = Path(sample_dir)
    found: dict[str, list[Path]] = {"complete": [], "unfinished": []}
    for m in sorted(root.glob(f"*/{MANIFEST}")):
        try:
            rec = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("stage") == "gen":
            found["complete" if rec.get("status") == "complete" else "unfinished"].append(m.parent)
    if len(found["complete"]) == 1:
        return found["complete"][0]
    if len(found["complete"]) > 1:
        names = ", ".join(str(p) for p in found["complete"])
        raise UserError(f"several gen outputs under {root} ({names}); set GEN_DIR to the one to align")
    if found["unfinished"]:
        raise UserError(f"gen output {found['unfinished'][0]} is unfinished; rerun scripts/gen.sh (it resumes)")
    raise UserError(f"no gen output under {root} (a folder with gen's {MANIFEST}); run scripts/gen.sh first")


if __name__ == "__main__":
    from sda.utils.cli import run_main

    def _main() -> None:
        if len(sys.argv) != 3 or sys.argv[1] != "find-output":
            raise UserError("usage: python -m sda.gen.plan find-output DATA")
        print(find_output(sys.argv[2]))

    run_main(_main)
