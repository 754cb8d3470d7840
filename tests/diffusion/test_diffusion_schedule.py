"""Known answers for the beta schedules and for timestep respacing."""

import math
from fractions import Fraction

import numpy as np
import pytest

from sda.diffusion import GaussianDiffusion, create_diffusion, get_named_beta_schedule, space_timesteps


def _exact_spacing(size: int, count: int, start: int = 0) -> list[int]:
    """Evenly spaced positions with exact rationals, rounded half to even (Python's round)."""
    if count <= 1:
        return [start + k for k in range(count)]  # stride 1
    return [start + round(Fraction(k * (size - 1), count - 1)) for k in range(count)]


def test_linear_schedule_known_answers():
    d = create_diffusion("")
    assert d.num_timesteps == 1000 and d.betas.dtype == np.float64
    assert d.betas[0] == pytest.approx(1e-4, abs=1e-15)
    assert d.betas[-1] == pytest.approx(0.02, abs=1e-15)
    betas = np.linspace(1e-4, 0.02, 1000)
    acp = np.cumprod(1.0 - betas)
    for i in (0, 1, 99, 504, 505, 999):
        assert d.alphas_cumprod[i] == pytest.approx(acp[i], rel=1e-12)
    assert d.alphas_cumprod[999] == pytest.approx(4.0358e-05, rel=1e-3)
    assert d.posterior_variance[0] == 0.0
    assert d.posterior_log_variance_clipped[0] == math.log(d.posterior_variance[1])
    pv1 = betas[1] * (1 - acp[0]) / (1 - acp[1])
    assert d.posterior_variance[1] == pytest.approx(pv1, rel=1e-12)


def test_linear_schedule_scales_with_steps():
    betas = get_named_beta_schedule("linear", 250)
    assert betas[0] == pytest.approx(4e-4) and betas[-1] == pytest.approx(0.08)


def test_cosine_schedule_spot_values():
    betas = get_named_beta_schedule("cosine", 1000)
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    acp = np.cumprod(1.0 - betas)
    assert acp[499] == pytest.approx(f(0.5) / f(0.0), rel=1e-10)
    assert betas[0] == pytest.approx(1 - f(0.001) / f(0.0), rel=1e-12)
    assert betas[-1] == 0.999  # clipped at max_beta


def test_unknown_schedule():
    with pytest.raises(ValueError, match="cosine"):
        get_named_beta_schedule("quadratic", 10)


@pytest.mark.parametrize("n", [250, 100, 50, 10])
def test_single_section_respacing(n):
    assert space_timesteps(1000, str(n)) == set(_exact_spacing(1000, n))


def test_respacing_100_golden():
    steps = sorted(space_timesteps(1000, "100"))
    assert steps[:8] == [0, 10, 20, 30, 40, 50, 61, 71]
    assert steps[50] == 505  # DDA's projection depth N=50 on the 100-step schedule
    assert steps[-1] == 999 and len(steps) == 100
    assert sorted(space_timesteps(1000, "250"))[:4] == [0, 4, 8, 12]


def test_multi_section_respacing():
    # 1000 = 334 + 333 + 333 (the first T % k sections are one step longer)
    expected = _exact_spacing(334, 10) + _exact_spacing(333, 10, 334) + _exact_spacing(333, 10, 667)
    assert space_timesteps(1000, "10,10,10") == set(expected)
    exact = set(_exact_spacing(100, 10) + _exact_spacing(100, 15, 100) + _exact_spacing(100, 20, 200))
    # 7 * 99/14 = 49.5 exactly, but the reference accumulates the stride by repeated float addition
    # and gets 49.4999..., so it keeps step 149 where exact rounding gives 150.
    assert space_timesteps(300, "10,15,20") == (exact - {150}) | {149}
    assert space_timesteps(300, [10, 15, 20]) == space_timesteps(300, "10,15,20")
    assert space_timesteps(6, "3") == {0, 2, 5}  # 2.5 rounds half to even


def test_ddim_respacing():
    assert space_timesteps(1000, "ddim50") == set(range(0, 1000, 20))
    assert space_timesteps(1000, "ddim25") == set(range(0, 1000, 40))
    # 7 steps exist: stride 143 is the first giving ceil(1000 / stride) == 7
    assert space_timesteps(1000, "ddim7") == set(range(0, 1000, 143))


@pytest.mark.parametrize("spec", ["ddim400", "ddim999", "1001", "10,600", "abc", "ddimx"])
def test_impossible_respacing_raises(spec):
    with pytest.raises(ValueError):
        space_timesteps(1000, spec)


def test_spaced_betas_keep_marginals():
    d = create_diffusion("100")
    base = create_diffusion("")
    kept = sorted(space_timesteps(1000, "100"))
    assert d.timestep_map == kept and d.num_timesteps == 100
    np.testing.assert_allclose(d.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-12)
    assert isinstance(d, GaussianDiffusion)
