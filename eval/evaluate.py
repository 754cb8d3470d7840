"""Stage 4 (eval): score raw + projected target sets with the SDA / DDA ensembles.

Accepts the reference command line, e.g.

    python eval/evaluate.py configs/eval/ConvNeXtB.py finetuned_ckpt/ConvNeXtB.pth \
        --originckpt pretrained_ckpt/convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth \
        --metrics accuracy --datatype C --ensemble sda --corruption gaussian_noise \
        --data_prefix1 data/ImageNet-C --data_prefix2 data/ImageNet-C-Syn

plus ``--corruption all`` / comma lists, ``--severity 1,2,3``, several ``--ensemble`` modes in
one pass (each model runs once per image), ``--out results.json`` (+ .md and .csv beside it),
``--launcher pytorch`` under torchrun, ``--amp``, ``--allow-missing``.

Models: ``sda`` = original model (``--originckpt``) on the raw image + fine-tuned model (the
positional checkpoint) on the projection. Every other mode uses one model, by default the
original one (``--single-model original``), as the paper's Source and DDA columns do; without
``--originckpt`` the positional checkpoint is that model (the reference's DDA command).
"""

from __future__ import annotations

from sda.commands import eval_evaluate as main  # the same function as python -m sda.commands eval/evaluate.py
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
