"""Train a class-conditional generator on a class-folder image set (DiT's train.py, one process).

    python gen/train.py --model ADM --config configs/mini/glyphs32/adm_cond.json \\
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

from torch import nn

from sda.models.adm_flags import create_model, model_kwargs
from sda.models.dit import build_dit
from sda.training.config import GenTrainConfig
from sda.training.runner import run_training
from sda.utils.cli import run_main
from sda.utils.errors import UserError


def build_parser():
    """The command line (for --help and the tests): declared by ``sda.training.config``."""
    from sda.models.adm_flags import MODEL_FLAG_DEFAULTS

    return GenTrainConfig.parser({**MODEL_FLAG_DEFAULTS, "class_cond": True, "learn_sigma": True}, __doc__)


def build_model(cfg: GenTrainConfig) -> nn.Module:
    if cfg.model == "ADM":
        kwargs = model_kwargs(cfg.model_flags)
        kwargs["num_classes"] = cfg.num_classes + (1 if cfg.class_dropout > 0 else 0)  # + the null class
        return create_model(**kwargs)
    try:
        return build_dit(
            cfg.model,
            input_size=cfg.image_size,
            in_channels=3,
            num_classes=cfg.num_classes,
            learn_sigma=cfg.learn_sigma,
        )
    except ValueError as e:
        raise UserError(f"--model {cfg.model}: {e}") from None


def main(argv: list[str] | None = None) -> dict:
    cfg = GenTrainConfig.from_argv(argv, __doc__)
    return run_training(cfg, lambda: build_model(cfg))


if __name__ == "__main__":
    run_main(main)
