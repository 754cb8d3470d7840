"""Stage 1 (gen) sampler: images for (label, seed) pairs, each depending only on its own seed and label.

Floating point: the noise is identical by construction, but BLAS kernels may round differently for
different batch shapes or thread counts (last bits of float32), which can move a rare pixel by one
level. ``precision="fp64"`` (slow; for checks) makes the bytes identical in practice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sda.diffusion import create_diffusion, randn_like_gen
from sda.gen.config import GenConfig
from sda.gen.models import VAE_SCALE, has_null_class, load_adm, load_dit, load_vae
from sda.models.dit import forward_with_cfg
from sda.utils.errors import UserError, require_finite
from sda.utils.images import to_uint8
from sda.utils.precision import autocast, compute_dtype
from sda.utils.seed import make_generator


@dataclass
class Sampler:
    """Draws images for (label, seed) pairs; an image depends only on its own seed and label."""

    model: nn.Module
    diffusion: Any
    input_size: int
    in_channels: int
    num_classes: int
    device: torch.device
    cfg_scale: float = 1.0
    cfg_channels: str = "3"
    vae: Any = None
    precision: str = "fp32"
    clip_denoised: bool = False
    source: str = "the generator"  # what require_finite names: the checkpoint (and VAE) files
    _dummy: torch.Generator = field(default_factory=lambda: make_generator(0), repr=False)

    @property
    def dtype(self) -> torch.dtype:
        return compute_dtype(self.precision)

    def model_fn(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(self.precision, self.device.type):
            if self.cfg_scale > 1.0:
                out = forward_with_cfg(self.model, x, t, y, self.cfg_scale, self.cfg_channels)  # (2N, C_out, H, W)
            else:
                out = self.model(x, t, y)  # (N, C_out, H, W)
        return out.to(x.dtype)

    @torch.no_grad()
    def sample(self, labels: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """uint8 images (N, H, W, 3) on CPU for labels[i] drawn with seeds[i]."""
        n = len(labels)
        gens = [make_generator(s) for s in seeds]
        shape = (n, self.in_channels, self.input_size, self.input_size)
        z = randn_like_gen(shape, gens, self.device, self.dtype)  # (N, C, S, S) x_T
        y = torch.tensor(list(labels), device=self.device, dtype=torch.long)  # (N,)
        if self.cfg_scale > 1.0:
            # Second half: the same x_T with the null class; its own trajectory is discarded, so its
            # noise comes from one throw-away generator.
            z = torch.cat([z, z], 0)  # (2N, C, S, S)
            y = torch.cat([y, torch.full_like(y, self.num_classes)], 0)  # (2N,)
            gens = gens + [self._dummy] * n
        x = self.diffusion.p_sample_loop(
            self.model_fn,
            z.shape,
            noise=z,
            clip_denoised=self.clip_denoised,
            model_kwargs=dict(y=y),
            device=self.device,
            generator=gens,
        )
        x = x[:n]  # (N, C, S, S)
        if self.vae is not None:
            with autocast(self.precision, self.device.type):
                x = self.vae.decode((x / VAE_SCALE).to(self.vae.dtype)).sample  # (N, 3, 8S, 8S)
            x = x.to(self.dtype)
        require_finite(x, self.source)
        return to_uint8(x, "dit").permute(0, 2, 3, 1).cpu()  # (N, H, W, 3)


def build_sampler(cfg: GenConfig, device: torch.device) -> Sampler:
    """Model, diffusion and (optional) VAE of a config, on ``device``."""
    ckpt = cfg.checkpoint
    if cfg.is_adm:
        from sda.diffusion.flags import create_diffusion_from_flags

        assert cfg.adm is not None
        model = load_adm(cfg.adm, ckpt, num_classes=cfg.num_classes, allow_pickle=cfg.allow_pickle)
        diffusion = create_diffusion_from_flags(cfg.adm, str(cfg.num_sampling_steps))
    else:
        model = load_dit(
            cfg.model,
            ckpt,
            input_size=cfg.input_size,
            num_classes=cfg.num_classes,
            in_channels=cfg.in_channels,
            learn_sigma=cfg.learn_sigma,
            allow_pickle=cfg.allow_pickle,
        )
        diffusion = create_diffusion(str(cfg.num_sampling_steps), learn_sigma=cfg.learn_sigma)
    if cfg.cfg_scale > 1.0 and not has_null_class(model, cfg.num_classes):
        how = "gen/train.py --model ADM --class_dropout 0.1" if cfg.is_adm else "label dropout"
        raise UserError(f"checkpoint {ckpt} has no null class (train it with {how}); use --cfg-scale 1.0")
    dtype = compute_dtype(cfg.precision)
    model = model.to(device)
    if cfg.precision == "fp64":
        model = model.double()
    vae = None if cfg.vae_folder is None else load_vae(cfg.vae_folder, device, dtype)
    return Sampler(
        model=model,
        diffusion=diffusion,
        input_size=cfg.input_size,
        in_channels=cfg.in_channels,
        num_classes=cfg.num_classes,
        device=device,
        cfg_scale=cfg.cfg_scale,
        cfg_channels=cfg.cfg_channels,
        vae=vae,
        precision=cfg.precision,
        clip_denoised=cfg.clip,
        source=f"checkpoint {ckpt}" + ("" if cfg.vae_folder is None else f" (with the VAE {cfg.vae_folder})"),
    )
