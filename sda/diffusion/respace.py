"""Timestep respacing: sample with a subset of the original steps, the model never notices."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .gaussian_diffusion import GaussianDiffusion, Model


def _parse_counts(section_counts: str) -> list[int]:
    try:
        return [int(s) for s in section_counts.split(",")]
    except ValueError:
        raise ValueError(
            f"bad timestep respacing {section_counts!r}: use 'ddimN' or comma-separated step counts like '250'"
        ) from None


def space_timesteps(num_timesteps: int, section_counts: str | Sequence[int]) -> set[int]:
    """The original steps to keep, as a set.

    section_counts "a,b,c" (or a list) splits the T steps into equal sections (the first T % k
    sections one step longer) and takes a, b, c evenly spaced steps from them: positions
    round(k * (size - 1) / (count - 1)), accumulated in floating point and rounded half to even, as
    the reference does (so "100" over 1000 keeps 0, 10, 20, 30, 40, 50, 61, ... and index 50 is 505).
    "ddimN" uses range(0, T, stride) with the smallest integer stride giving exactly N steps.
    Impossible requests raise ValueError.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = _parse_counts(section_counts[len("ddim") :])[0]
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(
                f"timestep respacing {section_counts!r}: no integer stride gives exactly {desired} of "
                f"{num_timesteps} steps"
            )
        section_counts = _parse_counts(section_counts)
    counts = [int(c) for c in section_counts]
    if not counts or any(c < 0 for c in counts):
        raise ValueError(f"timestep respacing {section_counts!r}: step counts must be non-negative")
    size_per, extra = divmod(num_timesteps, len(counts))
    start = 0
    steps: list[int] = []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(
                f"timestep respacing {section_counts!r}: cannot take {count} steps from a section of {size}"
            )
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        pos = 0.0
        for _ in range(count):
            steps.append(start + round(pos))
            pos += stride  # repeated addition, as the reference (matters for rounding ties)
        start += size
    return set(steps)


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion over a subset of another's steps.

    The betas are rebuilt from the kept alphas_cumprod, so the marginals q(x_t | x_0) at kept steps are
    unchanged. Every model (and cond_fn) call goes through a wrapper that maps the respaced index t to
    the original step `timestep_map[t]` (and, with rescale_timesteps, to t * 1000 / original steps).

    :param use_timesteps: original steps to keep.
    :param kwargs: GaussianDiffusion's arguments for the original process.
    """

    def __init__(self, use_timesteps: Iterable[int], **kwargs: Any) -> None:
        self.use_timesteps = set(int(s) for s in use_timesteps)
        self.original_num_steps = len(kwargs["betas"])
        base = GaussianDiffusion(**kwargs)
        if not self.use_timesteps or not self.use_timesteps <= set(range(self.original_num_steps)):
            raise ValueError(f"use_timesteps must be a non-empty subset of range({self.original_num_steps})")
        self.timestep_map: list[int] = sorted(self.use_timesteps)
        self._maps: dict[torch.device, torch.Tensor] = {}  # timestep_map per device, copied there once
        kept = base.alphas_cumprod[self.timestep_map]
        prev = np.append(1.0, kept[:-1])
        kwargs["betas"] = 1.0 - kept / prev
        super().__init__(**kwargs)

    def p_mean_variance(self, model: Model, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return super().p_mean_variance(self._wrap_model(model), *args, **kwargs)

    def training_losses(self, model: Model, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        return super().training_losses(self._wrap_model(model), *args, **kwargs)

    def condition_mean(self, cond_fn: Model, *args: Any, **kwargs: Any) -> torch.Tensor:
        return super().condition_mean(self._wrap_model(cond_fn), *args, **kwargs)

    def condition_score(self, cond_fn: Model, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return super().condition_score(self._wrap_model(cond_fn), *args, **kwargs)

    def _wrap_model(self, model: Model) -> _WrappedModel:
        if isinstance(model, _WrappedModel):
            return model
        return _WrappedModel(model, self._map_on, self.rescale_timesteps, self.original_num_steps)

    def _map_on(self, device: torch.device) -> torch.Tensor:
        """``timestep_map`` as a tensor on ``device`` (T',), made once per device: a model is wrapped for every
        step, and a fresh host-to-device copy per step would synchronise CUDA each time."""
        if device not in self._maps:
            self._maps[device] = torch.tensor(self.timestep_map, dtype=torch.long, device=device)
        return self._maps[device]

    def _scale_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return t  # the wrapper maps and scales


class _WrappedModel:
    """Calls `model(x, timestep_map[t], **kwargs)`; other attributes pass through to the model."""

    def __init__(
        self,
        model: Model,
        map_on: Callable[[torch.device], torch.Tensor],
        rescale_timesteps: bool,
        original_num_steps: int,
    ) -> None:
        self.model = model
        self.map_on = map_on  # device -> timestep_map (T',), cached by the diffusion
        self.rescale_timesteps = rescale_timesteps
        self.original_num_steps = original_num_steps

    def __call__(self, x: torch.Tensor, ts: torch.Tensor, **kwargs: Any) -> Any:
        new_ts = self.map_on(ts.device)[ts].to(ts.dtype)  # (N,) original steps
        if self.rescale_timesteps:
            new_ts = new_ts.float() * (1000.0 / self.original_num_steps)
        return self.model(x, new_ts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        model = self.__dict__.get("model")
        if model is None:
            raise AttributeError(name)
        return getattr(model, name)
