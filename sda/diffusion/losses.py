"""Likelihood helpers for the variational bound (Ho et al. 2020; Nichol & Dhariwal 2021).

All functions work elementwise and broadcast; results are in nats unless the caller divides by log(2).
"""

from __future__ import annotations

import math

import torch


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension except the batch one: (N, ...) -> (N,)."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(
    mean1: torch.Tensor | float,
    logvar1: torch.Tensor | float,
    mean2: torch.Tensor | float,
    logvar2: torch.Tensor | float,
) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise with broadcasting.

    Any argument may be a Python float; at least one must be a tensor (it sets device and dtype).
    """
    ref = next((a for a in (mean1, logvar1, mean2, logvar2) if isinstance(a, torch.Tensor)), None)
    if ref is None:
        raise TypeError("normal_kl needs at least one tensor argument")
    logvar1 = torch.as_tensor(logvar1).to(ref)
    logvar2 = torch.as_tensor(logvar2).to(ref)
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Tanh approximation of the standard normal CDF (the one the reference likelihoods use)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """Log-probability (nats) of 8-bit data rescaled to [-1, 1] under a Gaussian binned to width 2/255.

    The two edge bins (x near -1 and +1) extend to -inf and +inf.
    x, means, log_scales: (N, ...) of equal shape -> (N, ...).
    """
    if not (x.shape == means.shape == log_scales.shape):
        raise ValueError(
            f"shape mismatch: x {tuple(x.shape)}, means {tuple(means.shape)}, log_scales {tuple(log_scales.shape)}"
        )
    inv_std = torch.exp(-log_scales)
    centered = x - means
    half_bin = 1.0 / 255.0
    cdf_hi = approx_standard_normal_cdf(inv_std * (centered + half_bin))
    cdf_lo = approx_standard_normal_cdf(inv_std * (centered - half_bin))
    log_cdf_hi = torch.log(cdf_hi.clamp(min=1e-12))  # lowest bin: P(X < x + half_bin)
    log_sf_lo = torch.log((1.0 - cdf_lo).clamp(min=1e-12))  # highest bin: P(X > x - half_bin)
    log_bin = torch.log((cdf_hi - cdf_lo).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_hi, torch.where(x > 0.999, log_sf_lo, log_bin))
