"""Shared diffusion core (guided-diffusion formulation) for DiT and ADM.

`create_diffusion` builds the respaced process the way DiT's and guided-diffusion's factories do.
"""

from __future__ import annotations

from collections.abc import Sequence

from .gaussian_diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    betas_for_alpha_bar,
    get_named_beta_schedule,
)
from .losses import approx_standard_normal_cdf, discretized_gaussian_log_likelihood, mean_flat, normal_kl
from .noise import randn_like_gen, sample_timesteps
from .respace import SpacedDiffusion, space_timesteps

__all__ = [
    "GaussianDiffusion",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "SpacedDiffusion",
    "approx_standard_normal_cdf",
    "betas_for_alpha_bar",
    "create_diffusion",
    "discretized_gaussian_log_likelihood",
    "get_named_beta_schedule",
    "mean_flat",
    "normal_kl",
    "randn_like_gen",
    "sample_timesteps",
    "space_timesteps",
]


def create_diffusion(
    timestep_respacing: str | Sequence[int] | None,
    noise_schedule: str = "linear",
    use_kl: bool = False,
    sigma_small: bool = False,
    predict_xstart: bool = False,
    predict_v: bool = False,
    learn_sigma: bool = True,
    rescale_learned_sigmas: bool = False,
    diffusion_steps: int = 1000,
    rescale_timesteps: bool = False,
) -> SpacedDiffusion:
    """A SpacedDiffusion over `diffusion_steps` steps of `noise_schedule`.

    timestep_respacing: None or "" keeps every step; else a `space_timesteps` spec ("250", "ddim50",
    "10,15,20"). Loss: RESCALED_KL if use_kl, else RESCALED_MSE if rescale_learned_sigmas, else MSE.
    Variance: LEARNED_RANGE if learn_sigma, else FIXED_SMALL if sigma_small, else FIXED_LARGE.
    Mean: START_X if predict_xstart, VELOCITY if predict_v (an extension: guided-diffusion has no
    v-prediction), else EPSILON. rescale_timesteps=False (both official paths used
    here) gives the model the original integer timesteps.
    """
    assert not (predict_xstart and predict_v), "one model target (the configs check: flags.check_prediction)"
    betas = get_named_beta_schedule(noise_schedule, diffusion_steps)
    if predict_xstart:
        mean_type = ModelMeanType.START_X
    else:
        mean_type = ModelMeanType.VELOCITY if predict_v else ModelMeanType.EPSILON
    if use_kl:
        loss_type = LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = LossType.RESCALED_MSE
    else:
        loss_type = LossType.MSE
    if learn_sigma:
        var_type = ModelVarType.LEARNED_RANGE
    else:
        var_type = ModelVarType.FIXED_SMALL if sigma_small else ModelVarType.FIXED_LARGE
    if timestep_respacing is None or timestep_respacing == "":
        timestep_respacing = [diffusion_steps]
    return SpacedDiffusion(
        use_timesteps=space_timesteps(diffusion_steps, timestep_respacing),
        betas=betas,
        model_mean_type=mean_type,
        model_var_type=var_type,
        loss_type=loss_type,
        rescale_timesteps=rescale_timesteps,
    )
