"""Seeded Gaussian noise: one generator per image, so an image never depends on its batch neighbours."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn_like_gen(
    shape: Sequence[int],
    generator: Generators,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of `shape` on `device` / `dtype`.

    generator:
      - None: the global torch RNG of `device` (what `torch.randn_like` does in the reference code);
      - one torch.Generator: drawn on that generator's device in float32, then moved to device / dtype;
      - a list of generators, one per batch element (shape[0] of them): element i is drawn with
        generator i on that generator's device (normally CPU) in float32, then the batch is moved to
        device / dtype. An image's noise therefore depends only on its own generator.
    """
    shape = tuple(int(s) for s in shape)
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        z = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        return z.to(device=device, dtype=dtype)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]}: pass one per image")
    z = torch.stack(
        [torch.randn(shape[1:], generator=g, device=g.device, dtype=torch.float32).to(device) for g in generators]
    )  # (N, ...)
    return z.to(dtype=dtype)


def sample_timesteps(
    batch: int,
    num_timesteps: int,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform training timesteps in [0, num_timesteps): (batch,) int64 (all weights are 1).

    `generator` follows randn_like_gen: None, one generator, or one generator per batch element.
    """
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, num_timesteps, (batch,), generator=generator, device=gen_device)
        return t.to(device)
    generators = list(generator)
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} generators for a batch of {batch}: pass one per image")
    t = [torch.randint(0, num_timesteps, (1,), generator=g, device=g.device).cpu() for g in generators]
    return torch.cat(t).to(device)  # (N,)
