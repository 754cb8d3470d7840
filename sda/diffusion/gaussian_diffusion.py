"""Gaussian diffusion in the formulation of Ho et al. (2020) and Nichol & Dhariwal (2021).

One implementation serves DiT and ADM. Schedules are float64 numpy arrays (as in guided-diffusion);
values are rounded to float32 only when they are gathered for a batch of timesteps.

Noise: every method that draws noise takes `generator` (None, one torch.Generator, or one generator per
batch element, see `randn_like_gen`) or an explicit `noise` tensor. The sampling loops draw in the
reference order: x_T first, then one tensor per step from t = T-1 down to 0 (the t = 0 draw is unused
but still made), so `noise=` plus `step_noise=` reproduces a generator run exactly.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from .noise import Generators, randn_like_gen

Model = Callable[..., Any]  # model(x (N, C, ...), t (N,), **model_kwargs) -> (N, C or 2C, ...) [, extra]
LOG2 = math.log(2.0)


def get_named_beta_schedule(schedule_name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """Betas (T,) float64 for "linear" (Ho et al., rescaled so any T spans the same range) or "cosine"."""
    if schedule_name == "linear":
        scale = 1000 / num_diffusion_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    if schedule_name == "cosine":
        return betas_for_alpha_bar(num_diffusion_timesteps, lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2)
    raise ValueError(f"unknown noise schedule {schedule_name!r}: use 'linear' or 'cosine'")


def betas_for_alpha_bar(
    num_diffusion_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999
) -> np.ndarray:
    """Betas (T,) that discretize a cumulative-product function alpha_bar(s), s in [0, 1]."""
    T = num_diffusion_timesteps
    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return np.array(betas, dtype=np.float64)


class ModelMeanType(enum.Enum):
    """What the model's first C output channels predict."""

    PREVIOUS_X = enum.auto()  # x_{t-1}
    START_X = enum.auto()  # x_0
    EPSILON = enum.auto()  # the noise
    VELOCITY = enum.auto()  # v = sqrt(abar) * eps - sqrt(1 - abar) * x_0 (Salimans & Ho 2022; not in guided-diffusion)


class ModelVarType(enum.Enum):
    """How the reverse-step variance is chosen. LEARNED* models output 2C channels."""

    LEARNED = enum.auto()  # second half = log-variance
    FIXED_SMALL = enum.auto()  # posterior variance beta~_t
    FIXED_LARGE = enum.auto()  # beta_t (beta~_1 at t = 0)
    LEARNED_RANGE = enum.auto()  # second half v in [-1, 1] interpolates log beta~_t .. log beta_t


class LossType(enum.Enum):
    MSE = enum.auto()  # MSE (plus the VB term when the variance is learned)
    RESCALED_MSE = enum.auto()  # MSE plus the VB term scaled by num_timesteps / 1000
    KL = enum.auto()  # the variational bound
    RESCALED_KL = enum.auto()  # the variational bound times num_timesteps

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


def _table_tensor(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """(T,) float64 numpy table -> float32 tensor on device."""
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)).float().to(device)


def _extract_into_tensor(arr: np.ndarray, timesteps: torch.Tensor, broadcast_shape: Sequence[int]) -> torch.Tensor:
    """Gather arr[timesteps] as float32 on the timesteps' device, broadcast to (N, 1, ...) -> shape.

    Rounding float64 -> float32 before the gather gives the same values as after it, and also works on
    devices without float64.
    """
    res = _table_tensor(arr, timesteps.device)[timesteps]  # (N,)
    res = res.view(-1, *([1] * (len(broadcast_shape) - 1)))  # (N, 1, ...)
    return res.expand(*broadcast_shape)


def _batch_mask(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """1.0 where t != 0 else 0.0, shaped (N, 1, ...) with `ndim` dims: no noise on the last step."""
    return (t != 0).float().view(-1, *([1] * (ndim - 1)))


def _noise_like(x: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Noise shaped like x. Without a generator this is torch.randn_like, which follows x's memory
    layout (x may be a strided view of a model output), so global-RNG runs match the reference draws."""
    if generator is None:
        return torch.randn_like(x)
    return randn_like_gen(x.shape, generator, x.device, x.dtype)


def _last(steps: Iterator[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    out = None
    for out in steps:  # noqa: B007 - we want the last one
        pass
    if out is None:
        raise ValueError("the sampling loop ran no steps")
    return out


def final_sample(progressive: Callable[..., Iterator[dict[str, torch.Tensor]]]) -> Callable[..., torch.Tensor]:
    """The loop that returns only the last ``sample`` of a ``*_progressive`` loop: the same arguments (its
    signature and docs are the progressive loop's)."""

    @functools.wraps(progressive)
    def loop(*args: Any, **kwargs: Any) -> torch.Tensor:
        return _last(progressive(*args, **kwargs))["sample"]

    return loop


def _loop_device(model: Model, noise: torch.Tensor | None, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if noise is not None:
        return noise.device
    params = getattr(model, "parameters", None)
    if callable(params):
        p = next(iter(params()), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


class GaussianDiffusion:
    """Training and sampling utilities for a diffusion process with the given betas.

    :param betas: (T,) betas, index 0 is the first (least noisy) step.
    :param model_mean_type: what the model predicts.
    :param model_var_type: how the variance is obtained.
    :param loss_type: training objective.
    :param rescale_timesteps: pass t * 1000 / T (float) to the model instead of integer t.
    """

    def __init__(
        self,
        *,
        betas: np.ndarray | Sequence[float],
        model_mean_type: ModelMeanType,
        model_var_type: ModelVarType,
        loss_type: LossType,
        rescale_timesteps: bool = False,
    ) -> None:
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps

        betas = np.array(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array with values in (0, 1]")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)

        # q(x_t | x_0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)

        # q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # The posterior variance is 0 at t = 0; its log uses the t = 1 value there.
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

        # Derived tables the reference computes inline (same float64 expressions, computed once).
        self.one_minus_alphas_cumprod = 1.0 - self.alphas_cumprod
        self.log_betas = np.log(betas)
        # FIXED_LARGE: beta~_1 at t = 0 gives a better decoder likelihood than beta_0
        self.fixed_large_variance = np.append(self.posterior_variance[1], betas[1:])
        self.fixed_large_log_variance = np.log(self.fixed_large_variance)
        self.recip_posterior_mean_coef1 = 1.0 / self.posterior_mean_coef1
        self.posterior_mean_coef2_over_coef1 = self.posterior_mean_coef2 / self.posterior_mean_coef1
        self._tables: dict[tuple[str, torch.device], torch.Tensor] = {}

    def _extract(self, name: str, t: torch.Tensor, broadcast_shape: Sequence[int]) -> torch.Tensor:
        """``_extract_into_tensor(getattr(self, name), t, shape)`` with the float32 table cached per device,
        so a sampling step does no host-to-device copy (values identical: the same float64 -> float32 cast)."""
        key = (name, t.device)
        table = self._tables.get(key)
        if table is None:
            table = _table_tensor(getattr(self, name), t.device)  # (T,)
            self._tables[key] = table
        res = table[t]  # (N,)
        return res.view(-1, *([1] * (len(broadcast_shape) - 1))).expand(*broadcast_shape)

    # ---------------------------------------------------------------- forward process
    def q_mean_variance(
        self, x_start: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and log-variance of q(x_t | x_0), each shaped like x_start (N, C, ...)."""
        mean = self._extract("sqrt_alphas_cumprod", t, x_start.shape) * x_start
        variance = self._extract("one_minus_alphas_cumprod", t, x_start.shape)
        log_variance = self._extract("log_one_minus_alphas_cumprod", t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(
        self,
        x_start: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: Generators = None,
    ) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0): x_start (N, C, ...), t (N,) -> (N, C, ...). t = 0 is one step of noise."""
        if noise is None:
            noise = _noise_like(x_start, generator)
        if noise.shape != x_start.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != x_start shape {tuple(x_start.shape)}")
        return (
            self._extract("sqrt_alphas_cumprod", t, x_start.shape) * x_start
            + self._extract("sqrt_one_minus_alphas_cumprod", t, x_start.shape) * noise
        )

    def q_posterior_mean_variance(
        self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance, clipped log-variance of q(x_{t-1} | x_t, x_0), each (N, C, ...)."""
        if x_start.shape != x_t.shape:
            raise ValueError(f"x_start {tuple(x_start.shape)} and x_t {tuple(x_t.shape)} differ in shape")
        mean = (
            self._extract("posterior_mean_coef1", t, x_t.shape) * x_start
            + self._extract("posterior_mean_coef2", t, x_t.shape) * x_t
        )
        variance = self._extract("posterior_variance", t, x_t.shape)
        log_variance = self._extract("posterior_log_variance_clipped", t, x_t.shape)
        return mean, variance, log_variance

    # ---------------------------------------------------------------- reverse process
    def p_mean_variance(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run the model and form p(x_{t-1} | x_t) and the x_0 prediction.

        x (N, C, ...), t (N,). The model gets (x, t, **model_kwargs) and returns (N, C, ...), or
        (N, 2C, ...) for learned variances; it may also return a tuple (output, extra).
        `denoised_fn` maps the x_0 prediction before the optional clip to [-1, 1].
        Returns dict(mean, variance, log_variance, pred_xstart), each (N, C, ...), plus "extra" when the
        model returned a tuple.
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        B, C = x.shape[:2]
        if t.shape != (B,):
            raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
        model_output = model(x, self._scale_timesteps(t), **model_kwargs)
        extra = None
        if isinstance(model_output, tuple):
            model_output, extra = model_output

        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            if model_output.shape != (B, 2 * C, *x.shape[2:]):
                raise ValueError(
                    f"learned-variance model must output {2 * C} channels, got shape {tuple(model_output.shape)}"
                )
            model_output, var_values = torch.split(model_output, C, dim=1)  # (N, C, ...) each
            if self.model_var_type == ModelVarType.LEARNED:
                model_log_variance = var_values
            else:
                min_log = self._extract("posterior_log_variance_clipped", t, x.shape)
                max_log = self._extract("log_betas", t, x.shape)
                frac = (var_values + 1) / 2  # [-1, 1] -> [0, 1]
                model_log_variance = frac * max_log + (1 - frac) * min_log
            model_variance = torch.exp(model_log_variance)
        elif self.model_var_type == ModelVarType.FIXED_LARGE:
            model_variance = self._extract("fixed_large_variance", t, x.shape)
            model_log_variance = self._extract("fixed_large_log_variance", t, x.shape)
        elif self.model_var_type == ModelVarType.FIXED_SMALL:
            model_variance = self._extract("posterior_variance", t, x.shape)
            model_log_variance = self._extract("posterior_log_variance_clipped", t, x.shape)
        else:
            raise NotImplementedError(self.model_var_type)

        def process_xstart(x0: torch.Tensor) -> torch.Tensor:
            if denoised_fn is not None:
                x0 = denoised_fn(x0)
            return x0.clamp(-1, 1) if clip_denoised else x0

        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            pred_xstart = process_xstart(self._predict_xstart_from_xprev(x, t, model_output))
            model_mean = model_output
        elif self.model_mean_type == ModelMeanType.START_X:
            pred_xstart = process_xstart(model_output)
            model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        elif self.model_mean_type == ModelMeanType.EPSILON:
            pred_xstart = process_xstart(self._predict_xstart_from_eps(x, t, model_output))
            model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        elif self.model_mean_type == ModelMeanType.VELOCITY:
            pred_xstart = process_xstart(self._predict_xstart_from_v(x, t, model_output))
            model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        else:
            raise NotImplementedError(self.model_mean_type)

        out = {
            "mean": model_mean,
            "variance": model_variance,
            "log_variance": model_log_variance,
            "pred_xstart": pred_xstart,
        }
        if extra is not None:
            out["extra"] = extra
        return out

    def _weighted_difference(self, t: torch.Tensor, a: str, x: torch.Tensor, b: str, y: torch.Tensor) -> torch.Tensor:
        """``a_t * x - b_t * y`` with two schedule tables ``a`` and ``b`` at timesteps ``t`` (x's shape)."""
        return self._extract(a, t, x.shape) * x - self._extract(b, t, x.shape) * y

    def _predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self._weighted_difference(t, "sqrt_recip_alphas_cumprod", x_t, "sqrt_recipm1_alphas_cumprod", eps)

    def _predict_xstart_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # x_0 = sqrt(abar) * x_t - sqrt(1 - abar) * v: no 1 / sqrt(abar) amplification at high noise
        return self._weighted_difference(t, "sqrt_alphas_cumprod", x_t, "sqrt_one_minus_alphas_cumprod", v)

    def _predict_v(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The velocity target v = sqrt(abar_t) * noise - sqrt(1 - abar_t) * x_start (same shape)."""
        return self._weighted_difference(t, "sqrt_alphas_cumprod", noise, "sqrt_one_minus_alphas_cumprod", x_start)

    def _predict_xstart_from_xprev(self, x_t: torch.Tensor, t: torch.Tensor, xprev: torch.Tensor) -> torch.Tensor:
        # invert mean = coef1 * x_0 + coef2 * x_t
        return self._weighted_difference(t, "recip_posterior_mean_coef1", xprev, "posterior_mean_coef2_over_coef1", x_t)

    def _predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor) -> torch.Tensor:
        return (self._extract("sqrt_recip_alphas_cumprod", t, x_t.shape) * x_t - pred_xstart) / self._extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t.shape
        )

    def _scale_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        if self.rescale_timesteps:
            return t.float() * (1000.0 / self.num_timesteps)
        return t

    def condition_mean(
        self,
        cond_fn: Model,
        p_mean_var: dict[str, Any],
        x: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Shift the mean by variance * grad log p(y | x_t) (Sohl-Dickstein et al. 2015): (N, C, ...).

        cond_fn(x, t, **model_kwargs) returns the gradient, shaped like x.
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        gradient = cond_fn(x, self._scale_timesteps(t), **model_kwargs)  # (N, C, ...)
        return p_mean_var["mean"].float() + p_mean_var["variance"] * gradient.float()

    def condition_score(
        self,
        cond_fn: Model,
        p_mean_var: dict[str, Any],
        x: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """p_mean_variance's output with the score shifted by cond_fn (Song et al. 2021)."""
        model_kwargs = {} if model_kwargs is None else model_kwargs
        alpha_bar = self._extract("alphas_cumprod", t, x.shape)
        eps = self._predict_eps_from_xstart(x, t, p_mean_var["pred_xstart"])
        eps = eps - (1 - alpha_bar).sqrt() * cond_fn(x, self._scale_timesteps(t), **model_kwargs)
        out = dict(p_mean_var)
        out["pred_xstart"] = self._predict_xstart_from_eps(x, t, eps)
        out["mean"], _, _ = self.q_posterior_mean_variance(out["pred_xstart"], x, t)
        return out

    def p_sample(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cond_fn: Model | None = None,
        model_kwargs: dict[str, Any] | None = None,
        *,
        noise: torch.Tensor | None = None,
        generator: Generators = None,
    ) -> dict[str, torch.Tensor]:
        """One ancestral step x_t -> x_{t-1}: x (N, C, ...), t (N,).

        Noise (given, or drawn after the model call as in the reference) is not added where t == 0.
        Returns dict(sample, pred_xstart), each (N, C, ...).
        """
        out = self.p_mean_variance(
            model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs
        )
        if noise is None:
            noise = _noise_like(x, generator)  # (N, C, ...)
        if cond_fn is not None:
            out["mean"] = self.condition_mean(cond_fn, out, x, t, model_kwargs=model_kwargs)
        std = torch.exp(0.5 * out["log_variance"])
        sample = out["mean"] + _batch_mask(t, x.ndim) * std * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def p_sample_loop_progressive(
        self, model: Model, shape: Sequence[int], *args: Any, **kwargs: Any
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Ancestral sampling from x_T to x_0, yielding p_sample's dict at every step (no gradients);
        ``p_sample_loop`` takes the same arguments and returns the final sample (N, C, ...). The arguments after
        ``shape`` are the reference's (noise, clip_denoised, denoised_fn, cond_fn, model_kwargs, device,
        progress) plus keyword-only ``generator`` and ``step_noise``: see :meth:`_sample_loop`."""
        yield from self._sample_loop(self.p_sample, model, shape, *args, **kwargs)

    p_sample_loop = final_sample(p_sample_loop_progressive)

    def _sample_loop(
        self,
        step: Callable[..., dict[str, torch.Tensor]],
        model: Model,
        shape: Sequence[int],
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cond_fn: Model | None = None,
        model_kwargs: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        eta: float | None = None,
        *,
        generator: Generators = None,
        step_noise: Sequence[torch.Tensor] | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The sampling loop of ``step`` (p_sample or ddim_sample; ``eta`` only for the latter).

        noise: x_T (else drawn with `generator`); step_noise: num_timesteps tensors for the steps
        t = T-1 ... 0 (else drawn with `generator`). device: defaults to noise's, then the model's.
        """
        step_kwargs = dict(clip_denoised=clip_denoised, denoised_fn=denoised_fn, cond_fn=cond_fn)
        step_kwargs.update(model_kwargs=model_kwargs, **({} if eta is None else {"eta": eta}))
        shape = tuple(int(s) for s in shape)
        device = _loop_device(model, noise, device)
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise shape {tuple(noise.shape)} != requested shape {shape}")
            img = noise
        else:
            img = randn_like_gen(shape, generator, device)  # (N, C, ...) x_T
        if step_noise is not None and len(step_noise) != self.num_timesteps:
            raise ValueError(f"step_noise has {len(step_noise)} tensors, need one per step ({self.num_timesteps})")
        indices = list(range(self.num_timesteps))[::-1]
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices)
        for k, i in enumerate(indices):
            t = torch.full((shape[0],), i, device=device, dtype=torch.long)  # (N,)
            z = None if step_noise is None else step_noise[k].to(device=img.device, dtype=img.dtype)
            with torch.no_grad():
                out = step(model, img, t, noise=z, generator=generator, **step_kwargs)
            yield out
            img = out["sample"]

    # ---------------------------------------------------------------- DDIM
    def ddim_sample(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cond_fn: Model | None = None,
        model_kwargs: dict[str, Any] | None = None,
        eta: float = 0.0,
        *,
        noise: torch.Tensor | None = None,
        generator: Generators = None,
    ) -> dict[str, torch.Tensor]:
        """One DDIM step (Song et al. 2021, eq. 12) x_t -> x_{t-1}; eta = 0 is deterministic.

        Noise is still drawn when eta = 0 (reference draw order). Returns dict(sample, pred_xstart).
        """
        out = self.p_mean_variance(
            model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs
        )
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, t, model_kwargs=model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])  # re-derived for any mean type
        alpha_bar = self._extract("alphas_cumprod", t, x.shape)
        alpha_bar_prev = self._extract("alphas_cumprod_prev", t, x.shape)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        if noise is None:
            noise = _noise_like(x, generator)
        mean_pred = out["pred_xstart"] * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        sample = mean_pred + _batch_mask(t, x.ndim) * sigma * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_reverse_sample(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        eta: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Deterministic DDIM inversion step x_t -> x_{t+1}. Returns dict(sample, pred_xstart)."""
        if eta != 0.0:
            raise ValueError("ddim_reverse_sample is only defined for eta = 0")
        out = self.p_mean_variance(
            model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs
        )
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar_next = self._extract("alphas_cumprod_next", t, x.shape)
        mean_pred = out["pred_xstart"] * torch.sqrt(alpha_bar_next) + torch.sqrt(1 - alpha_bar_next) * eps
        return {"sample": mean_pred, "pred_xstart": out["pred_xstart"]}

    def ddim_sample_loop_progressive(
        self, model: Model, shape: Sequence[int], *args: Any, **kwargs: Any
    ) -> Iterator[dict[str, torch.Tensor]]:
        """DDIM sampling from x_T to x_0 (p_sample_loop's arguments, then ``eta``, default 0), yielding
        ddim_sample's dict at every step; ``ddim_sample_loop`` takes the same arguments and returns the final
        sample."""
        yield from self._sample_loop(self.ddim_sample, model, shape, *args, **kwargs)

    ddim_sample_loop = final_sample(ddim_sample_loop_progressive)

    # ---------------------------------------------------------------- training

    def _vb_terms_bpd(
        self,
        model: Model,
        x_start: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One term of the variational bound in bits per dim: output (N,), pred_xstart (N, C, ...).

        The decoder NLL at t == 0, else KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)).
        """
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / LOG2  # (N,)
        nll = -discretized_gaussian_log_likelihood(x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        nll = mean_flat(nll) / LOG2  # (N,)
        return {"output": torch.where(t == 0, nll, kl), "pred_xstart": out["pred_xstart"]}

    def training_losses(
        self,
        model: Model,
        x_start: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: dict[str, Any] | None = None,
        noise: torch.Tensor | None = None,
        *,
        generator: Generators = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses for x_start (N, C, ...) at timesteps t (N,).

        Returns dict with "loss" (N,), and for MSE losses "mse" (N,) plus "vb" (N,) when the variance
        is learned (hybrid loss: the VB term sees the mean prediction detached, so it trains only
        the variance; scaled by T / 1000 for RESCALED_MSE).
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        if noise is None:
            noise = _noise_like(x_start, generator)
        x_t = self.q_sample(x_start, t, noise=noise)  # (N, C, ...)
        terms: dict[str, torch.Tensor] = {}

        if self.loss_type.is_vb():
            terms["loss"] = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False, model_kwargs=model_kwargs)[
                "output"
            ]
            if self.loss_type == LossType.RESCALED_KL:
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms
        if self.loss_type not in (LossType.MSE, LossType.RESCALED_MSE):
            raise NotImplementedError(self.loss_type)

        model_output = model(x_t, self._scale_timesteps(t), **model_kwargs)
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            B, C = x_t.shape[:2]
            if model_output.shape != (B, 2 * C, *x_t.shape[2:]):
                raise ValueError(
                    f"learned-variance model must output {2 * C} channels, got shape {tuple(model_output.shape)}"
                )
            model_output, var_values = torch.split(model_output, C, dim=1)  # (N, C, ...) each
            frozen = torch.cat([model_output.detach(), var_values], dim=1)  # (N, 2C, ...)

            def frozen_model(*_args: Any, **_kwargs: Any) -> torch.Tensor:
                return frozen

            terms["vb"] = self._vb_terms_bpd(frozen_model, x_start, x_t, t, clip_denoised=False)["output"]
            if self.loss_type == LossType.RESCALED_MSE:
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)

        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            target = self.q_posterior_mean_variance(x_start, x_t, t)[0]
        elif self.model_mean_type == ModelMeanType.START_X:
            target = x_start
        elif self.model_mean_type == ModelMeanType.VELOCITY:
            target = self._predict_v(x_start, t, noise)
        else:
            target = noise
        terms["mse"] = mean_flat((target - model_output) ** 2)  # (N,)
        terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
        return terms

    def _prior_bpd(self, x_start: torch.Tensor) -> torch.Tensor:
        """KL(q(x_T | x_0) || N(0, I)) in bits per dim: (N,)."""
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, device=x_start.device, dtype=torch.long)
        mean, _, log_var = self.q_mean_variance(x_start, t)
        return mean_flat(normal_kl(mean, log_var, 0.0, 0.0)) / LOG2

    def calc_bpd_loop(
        self,
        model: Model,
        x_start: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        *,
        generator: Generators = None,
    ) -> dict[str, torch.Tensor]:
        """Full variational bound in bits per dim: total_bpd (N,), prior_bpd (N,), vb / xstart_mse / mse (N, T)."""
        B = x_start.shape[0]
        vb, xstart_mse, mse = [], [], []
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((B,), i, device=x_start.device, dtype=torch.long)
            noise = _noise_like(x_start, generator)
            x_t = self.q_sample(x_start, t, noise=noise)
            with torch.no_grad():
                out = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
            vb.append(out["output"])
            xstart_mse.append(mean_flat((out["pred_xstart"] - x_start) ** 2))
            eps = self._predict_eps_from_xstart(x_t, t, out["pred_xstart"])
            mse.append(mean_flat((eps - noise) ** 2))
        vb_t = torch.stack(vb, dim=1)  # (N, T), column 0 is t = T-1
        prior_bpd = self._prior_bpd(x_start)
        return {
            "total_bpd": vb_t.sum(dim=1) + prior_bpd,
            "prior_bpd": prior_bpd,
            "vb": vb_t,
            "xstart_mse": torch.stack(xstart_mse, dim=1),
            "mse": torch.stack(mse, dim=1),
        }
