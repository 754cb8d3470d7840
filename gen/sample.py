"""Stage 1 (gen): sample a labelled synthetic set with DiT (or a class-conditional ADM).

    python gen/sample.py --ckpt pretrained_ckpt/DiT-XL-2-256x256.pt --cfg-scale 1.0 --out-dir data/DiT-Syn
    torchrun --nproc_per_node 8 gen/sample.py ...   # any number of GPUs / nodes; gloo on CPU

See ``sda.gen`` for the layout, seeding and resume rules.
"""

from __future__ import annotations

from sda.commands import gen_sample as main  # the same function as python -m sda.commands gen/sample.py
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
