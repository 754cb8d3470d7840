"""guided-diffusion's diffusion flags (its ``diffusion_defaults``, without ``timestep_respacing``, which is each
command's own) and the diffusion they describe (its ``create_gaussian_diffusion``), plus ``predict_v``
(v-prediction, an extension of this project). The model half of the reference's flags is
``sda.models.adm_flags``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from sda.utils.cli import add_flag_table
from sda.utils.errors import UserError

DIFFUSION_FLAG_DEFAULTS: dict[str, Any] = dict(
    diffusion_steps=1000,
    noise_schedule="linear",
    use_kl=False,
    predict_xstart=False,
    predict_v=False,
    rescale_timesteps=False,
    rescale_learned_sigmas=False,
)
DIFFUSION_FLAG_HELP = {
    "predict_xstart": "the model predicts x0 instead of the noise (guided-diffusion's flag)",
    "predict_v": "the model predicts v = sqrt(abar) eps - sqrt(1 - abar) x0 (an extension, not in guided-diffusion)",
}


def check_prediction(flags: Mapping[str, Any]) -> None:
    """The one check of the prediction target: ``predict_xstart`` and ``predict_v`` exclude each other."""
    if flags.get("predict_xstart") and flags.get("predict_v"):
        raise UserError("--predict_xstart and --predict_v exclude each other; set at most one")


def add_diffusion_args(
    parser: argparse.ArgumentParser, names: Iterable[str] | None = None, defaults: Mapping[str, Any] | None = None
) -> None:
    """Add guided-diffusion's diffusion flags (all, or ``names``) with ``defaults`` over the reference's."""
    names = list(DIFFUSION_FLAG_DEFAULTS) if names is None else list(names)
    table = {n: DIFFUSION_FLAG_DEFAULTS[n] for n in names}
    add_flag_table(parser, table, defaults or {}, help=DIFFUSION_FLAG_HELP)


def create_diffusion_from_flags(flags: Mapping[str, Any], timestep_respacing: str | None):
    """The (respaced) diffusion of an ADM's flags (checked by the run's config: :func:`check_prediction`):
    guided-diffusion's create_gaussian_diffusion."""
    from sda.diffusion import create_diffusion

    kwargs = {k: flags[k] for k in DIFFUSION_FLAG_DEFAULTS if k in flags}
    return create_diffusion(timestep_respacing, learn_sigma=flags.get("learn_sigma", True), **kwargs)
