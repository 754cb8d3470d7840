"""Train a class-conditional generator on a class-folder image set (DiT's train.py, one process).

    python gen/train.py --model ADM --config sda/mini/configs/glyphs32/adm_cond.json \\
        --data_dir data/mini/glyphs32/train --results_dir results/mini/glyphs32/train/adm_cond \\
        --export assets/mini/glyphs32/adm_cond.pt
    python gen/train.py --model DiT-S/4 --image_size 32 --data_dir data/mini/glyphs32/train --results_dir results/dit

``--model ADM`` is guided-diffusion's UNet with ``class_cond True`` (its model flags apply; with
``--class_dropout p`` it gets one more label row, the null class, for classifier-free guidance);
``--model DiT-*`` is a pixel-space DiT (in_channels 3, learned sigma, class dropout 0.1, null class
= num_classes). The class count defaults to the number of class folders. Labels follow the sorted
folder order, as gen/sample.py writes them. Checkpoints: ``<results_dir>/checkpoints/<step>.pt`` in
DiT's training format (resume by running the same command); ``--export`` writes the EMA weights.
"""

from __future__ import annotations

from sda.commands import gen_train as main  # the same function as python -m sda.commands gen/train.py
from sda.utils.cli import run_main


def build_parser():
    """The command line (for --help and the tests): declared by ``sda.training.config``."""
    from sda.training.config import GenTrainConfig

    return GenTrainConfig.build_parser(__doc__)


if __name__ == "__main__":
    run_main(main)
