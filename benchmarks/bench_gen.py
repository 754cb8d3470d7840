"""Stage 1 throughput: images/s of the gen sampler for a model, batch size and precision, against a
plain baseline (fp32, batch 1, the same model) measured in the same run.

    python benchmarks/bench_gen.py --model DiT-S/8 --image-size 32 --no-vae --steps 10 --batch-size 16
    python benchmarks/bench_gen.py --model DiT-XL/2 --image-size 256 --steps 250 --batch-size 32 \\
        --precision bf16 --vae-path pretrained_ckpt/sd-vae-ft-ema --device cuda

Weights are random (speed does not depend on them); a VAE is decoded only with --vae-path.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sda.diffusion import create_diffusion
from sda.gen.config import LATENT_CHANNELS, VAE_DOWNSAMPLE
from sda.gen.models import load_vae
from sda.gen.sampler import Sampler
from sda.models.dit import build_dit
from sda.utils.cli import run_main
from sda.utils.precision import PRECISIONS


def make_sampler(args: argparse.Namespace, precision: str, device: torch.device) -> Sampler:
    pixel = args.vae_path is None
    in_channels = 3 if pixel else LATENT_CHANNELS
    size = args.image_size if pixel else args.image_size // VAE_DOWNSAMPLE
    model = build_dit(args.model, input_size=size, in_channels=in_channels, num_classes=args.num_classes).eval()
    dtype = torch.float64 if precision == "fp64" else torch.float32
    model = model.to(device=device, dtype=dtype)
    vae = None if pixel else load_vae(args.vae_path, device, dtype)
    return Sampler(
        model=model,
        diffusion=create_diffusion(str(args.steps)),
        input_size=size,
        in_channels=in_channels,
        num_classes=args.num_classes,
        device=device,
        cfg_scale=args.cfg_scale,
        vae=vae,
        precision=precision,
    )


def images_per_second(sampler: Sampler, batch: int, n_images: int) -> float:
    """Throughput over n_images (rounded up to whole batches), after one warm-up batch."""
    labels = [i % sampler.num_classes for i in range(batch)]
    sampler.sample(labels, list(range(batch)))  # warm-up (allocations, kernel selection)
    n_batches = max(1, -(-n_images // batch))
    if sampler.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for b in range(n_batches):
        sampler.sample(labels, [b * batch + i for i in range(batch)])
    if sampler.device.type == "cuda":
        torch.cuda.synchronize()
    return n_batches * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="DiT-S/8")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cfg-scale", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--images", type=int, default=32, help="images timed for the chosen setting")
    p.add_argument("--baseline-images", type=int, default=8, help="images timed for the baseline")
    p.add_argument("--vae-path", default=None, help="decode latents with this local VAE (else a pixel model)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    torch.backends.cuda.matmul.allow_tf32 = True  # the reference's default
    device = torch.device(args.device)
    base = images_per_second(make_sampler(args, "fp32", device), 1, args.baseline_images)
    ours = images_per_second(make_sampler(args, args.precision, device), args.batch_size, args.images)
    result = {
        "model": args.model,
        "image_size": args.image_size,
        "pixel_space": args.vae_path is None,
        "steps": args.steps,
        "cfg_scale": args.cfg_scale,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "baseline": {"precision": "fp32", "batch_size": 1, "images_per_s": round(base, 4)},
        "setting": {"precision": args.precision, "batch_size": args.batch_size, "images_per_s": round(ours, 4)},
        "speedup": round(ours / base, 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        from sda.utils.io import write_json

        write_json(args.json, result)


if __name__ == "__main__":
    run_main(main)
