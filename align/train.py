"""Train the unconditional ADM UNet that the align stage projects with (guided-diffusion's image_train).

    python align/train.py --config sda/mini/configs/glyphs32/adm_uncond.json --data_dir data/mini/glyphs32/train \\
        --results_dir results/mini/glyphs32/train/adm_uncond --export assets/mini/glyphs32/adm_uncond.pt

Model flags are guided-diffusion's (``--image_size 32 --num_channels 32 ...``); the exported file is
the EMA state dict, loadable by ``align/project.py --model_path`` with the same model flags. The
training checkpoints (``<results_dir>/checkpoints/<step>.pt``, DiT's {"model","ema","opt","args"}
format) let an interrupted run resume: run the same command again.
"""

from __future__ import annotations

from sda.commands import align_train as main  # the same function as python -m sda.commands align/train.py
from sda.utils.cli import run_main


def build_parser():
    """The command line (for --help and the tests): declared by ``sda.training.config``."""
    from sda.training.config import align_train_parser

    return align_train_parser(__doc__)


if __name__ == "__main__":
    run_main(main)
