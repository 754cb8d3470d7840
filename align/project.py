"""Stage 2 (align): project images into the ADM's synthetic domain with DDA's guided projection.

Accepts SDA's align.sh flags as written (the ADM MODEL_FLAGS, --batch_size --num_samples
--timestep_respacing --model_path --base_samples --D --N --scale --datatype --corruption --severity
--save_dir), launched with torchrun instead of mpiexec:

    torchrun --nproc_per_node 8 align/project.py $MODEL_FLAGS --batch_size 10 --timestep_respacing 100 \\
        --model_path pretrained_ckpt/256x256_diffusion_uncond.pt --base_samples data/ImageNet-C \\
        --D 4 --N 50 --scale 6 --datatype C --corruption gaussian_noise --severity 5 --save_dir data/

Every input is projected exactly once over all processes; rerunning the command resumes. See ``sda.align``.
"""

from __future__ import annotations

from sda.commands import align_project as main  # the same function as python -m sda.commands align/project.py
from sda.utils.cli import run_main

if __name__ == "__main__":
    run_main(main)
