"""Sampling: q_sample statistics, a numpy re-implementation of the ancestral chain, seeding, respacing."""

import numpy as np
import pytest
import torch

from sda.diffusion import create_diffusion, randn_like_gen, sample_timesteps, space_timesteps


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def learned_model(x, t, y=None):
    """Per-element dummy with learned-range variance: eps = 0.5 tanh(x), v = 0.3 - 0.001 t."""
    eps = 0.5 * torch.tanh(x)  # (N, C, H, W)
    v = torch.full_like(x, 0.3) - 0.001 * t.float().view(-1, 1, 1, 1)  # (N, C, H, W)
    if y is not None:
        eps = eps + 0.01 * y.view(-1, 1, 1, 1)
    return torch.cat([eps, v], dim=1)  # (N, 2C, H, W)


def test_q_sample_statistics():
    d = create_diffusion("")
    x0 = torch.full((4, 3, 128, 128), 0.5)
    t = torch.tensor([0, 100, 500, 999])
    xt = d.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    acp = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[[0, 100, 500, 999]]
    mean = xt.mean(dim=(1, 2, 3)).numpy()
    std = xt.std(dim=(1, 2, 3)).numpy()
    n = x0[0].numel()  # 49,152 draws per timestep: standard errors sqrt((1 - abar) / n) and std / sqrt(2 n)
    assert np.all(np.abs(mean - 0.5 * np.sqrt(acp)) <= 5 * np.sqrt((1 - acp) / n))
    assert np.all(np.abs(std - np.sqrt(1 - acp)) <= 5 * np.sqrt(1 - acp) / np.sqrt(2 * n) + 1e-6)
    noise = torch.randn(4, 3, 128, 128)
    expect = (
        torch.from_numpy(np.sqrt(acp)).float().view(-1, 1, 1, 1) * x0
        + torch.from_numpy(np.sqrt(1 - acp)).float().view(-1, 1, 1, 1) * noise
    )
    torch.testing.assert_close(d.q_sample(x0, t, noise=noise), expect)


def _numpy_chain(x_T, step_noise, kept, clip):
    """The learned-range ancestral sampler on respaced steps `kept`, in float64 numpy."""
    acp_full = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    acp = acp_full[kept]
    acp_prev = np.concatenate([[1.0], acp[:-1]])
    betas = 1 - acp / acp_prev
    post_var = betas * (1 - acp_prev) / (1 - acp)
    post_logvar = np.log(np.concatenate([[post_var[1]], post_var[1:]]))
    x = x_T.astype(np.float64)
    for k, i in enumerate(reversed(range(len(kept)))):
        eps = 0.5 * np.tanh(x)
        v = 0.3 - 0.001 * kept[i]  # the model sees the original step
        x0 = (x - np.sqrt(1 - acp[i]) * eps) / np.sqrt(acp[i])
        if clip:
            x0 = np.clip(x0, -1, 1)
        mean = (betas[i] * np.sqrt(acp_prev[i]) * x0 + (1 - acp_prev[i]) * np.sqrt(1 - betas[i]) * x) / (1 - acp[i])
        frac = (v + 1) / 2
        logvar = frac * np.log(betas[i]) + (1 - frac) * post_logvar[i]
        x = mean + (i > 0) * np.exp(0.5 * logvar) * step_noise[k]
    return x


@pytest.mark.parametrize("clip", [True, False])
def test_p_sample_loop_matches_numpy(clip):
    d = create_diffusion("10")
    kept = sorted(space_timesteps(1000, "10"))
    shape = (2, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(shape, generator=g)
    steps = [torch.randn(shape, generator=g) for _ in range(10)]
    out = d.p_sample_loop(learned_model, shape, noise=x_T, step_noise=steps, clip_denoised=clip)
    ref = _numpy_chain(x_T.numpy(), [s.numpy() for s in steps], kept, clip)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_per_sample_generators_ignore_batch_split():
    d = create_diffusion("10")
    y = torch.arange(4).float()
    full = d.p_sample_loop(learned_model, (4, 3, 4, 4), model_kwargs={"y": y}, generator=_gens([5, 6, 7, 8]))
    a = d.p_sample_loop(learned_model, (2, 3, 4, 4), model_kwargs={"y": y[:2]}, generator=_gens([5, 6]))
    b = d.p_sample_loop(learned_model, (2, 3, 4, 4), model_kwargs={"y": y[2:]}, generator=_gens([7, 8]))
    torch.testing.assert_close(full, torch.cat([a, b]), rtol=0, atol=1e-6)


def test_step_noise_equals_generator_path():
    d = create_diffusion("10")
    shape = (3, 3, 4, 4)
    seeds = [1, 2, 3]
    via_gen = d.p_sample_loop(learned_model, shape, generator=_gens(seeds))
    gens = _gens(seeds)
    x_T = randn_like_gen(shape, gens, "cpu")
    steps = [randn_like_gen(shape, gens, "cpu") for _ in range(d.num_timesteps)]
    via_noise = d.p_sample_loop(learned_model, shape, noise=x_T, step_noise=steps)
    assert torch.equal(via_gen, via_noise)
    with pytest.raises(ValueError, match="step_noise"):
        d.p_sample_loop(learned_model, shape, noise=x_T, step_noise=steps[:-1])


def test_randn_like_gen_and_timesteps():
    z = randn_like_gen((2, 3), _gens([4, 9]), "cpu")
    assert torch.equal(z[1], torch.randn(3, generator=torch.Generator().manual_seed(9)))
    one = randn_like_gen((2, 3), torch.Generator().manual_seed(4), "cpu", torch.float64)
    assert one.dtype == torch.float64
    with pytest.raises(ValueError, match="one per image"):
        randn_like_gen((3, 3), _gens([1, 2]), "cpu")
    t = sample_timesteps(64, 10, torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() >= 0 and t.max() < 10
    assert torch.equal(
        sample_timesteps(2, 1000, _gens([3, 4])),
        torch.cat([sample_timesteps(1, 1000, _gens([3])), sample_timesteps(1, 1000, _gens([4]))]),
    )


def test_global_rng_path_is_reproducible():
    d = create_diffusion("10")
    torch.manual_seed(3)
    a = d.p_sample_loop(learned_model, (2, 3, 4, 4))
    torch.manual_seed(3)
    b = d.p_sample_loop(learned_model, (2, 3, 4, 4))
    assert torch.equal(a, b)


@pytest.mark.parametrize("rescale", [False, True])
def test_spaced_model_sees_original_timesteps(rescale):
    d = create_diffusion("10", diffusion_steps=100, rescale_timesteps=rescale)
    seen = []

    def model(x, t, y):
        seen.append(t.tolist())
        assert torch.equal(y, torch.tensor([7, 7]))
        return learned_model(x, t)

    d.p_sample_loop(model, (2, 1, 2, 2), model_kwargs={"y": torch.tensor([7, 7])})
    expected = [[s * (10.0 if rescale else 1)] * 2 for s in reversed(d.timestep_map)]
    assert seen == expected and len(seen) == 10
    if rescale:
        assert seen[0] == [990.0, 990.0]  # 99 * 1000 / 100
    # the map is made once per device, not copied again for every step's wrapper
    assert d._wrap_model(model).map_on(torch.device("cpu")) is d._map_on(torch.device("cpu"))


def test_p_sample_no_noise_at_t0_and_extra():
    d = create_diffusion("10")
    x = torch.randn(2, 3, 4, 4)
    t = torch.tensor([0, 5])

    def model(x, t):
        return learned_model(x, t), {"aux": 1}

    out = d.p_mean_variance(model, x, t)
    assert out["extra"] == {"aux": 1}
    big = torch.full_like(x, 100.0)
    s = d.p_sample(model, x, t, noise=big)["sample"]
    torch.testing.assert_close(s[0], out["mean"][0])  # t == 0: the mean, no noise
    assert (s[1] - out["mean"][1]).abs().min() > 1.0


def test_ddim_eta0_deterministic_closed_form():
    d = create_diffusion("ddim10", learn_sigma=False)
    x_T = torch.randn(2, 3, 4, 4)

    def zero_eps(x, t):
        return torch.zeros_like(x)

    a = d.ddim_sample_loop(zero_eps, x_T.shape, noise=x_T, clip_denoised=False, generator=_gens([1, 2]))
    b = d.ddim_sample_loop(zero_eps, x_T.shape, noise=x_T, clip_denoised=False, generator=_gens([3, 4]))
    assert torch.equal(a, b)
    # eps = 0: each step rescales x by sqrt(abar_prev / abar), which telescopes to 1 / sqrt(abar_{T-1})
    expect = x_T / np.sqrt(d.alphas_cumprod[-1])
    torch.testing.assert_close(a, expect, rtol=1e-4, atol=1e-4)
    c = d.ddim_sample_loop(zero_eps, x_T.shape, noise=x_T, clip_denoised=False, eta=1.0, generator=_gens([1, 2]))
    assert not torch.equal(a, c)


def test_sampling_loops_take_the_reference_arguments_in_order():
    """Both loops take guided-diffusion's arguments positionally (noise, clip_denoised, denoised_fn, cond_fn,
    model_kwargs, device, progress; DDIM then eta); eta is DDIM's alone."""
    d = create_diffusion("ddim10", learn_sigma=False)
    x_T = torch.randn(2, 3, 4, 4)

    def zero_eps(x, t):
        return torch.zeros_like(x)

    by_name = d.ddim_sample_loop(zero_eps, x_T.shape, noise=x_T, clip_denoised=False, eta=1.0, generator=_gens([1, 2]))
    positional = d.ddim_sample_loop(
        zero_eps, x_T.shape, x_T, False, None, None, None, None, False, 1.0, generator=_gens([1, 2])
    )
    assert torch.equal(by_name, positional)
    a = d.p_sample_loop(zero_eps, x_T.shape, noise=x_T, clip_denoised=False, generator=_gens([1, 2]))
    b = d.p_sample_loop(zero_eps, x_T.shape, x_T, False, None, None, None, None, False, generator=_gens([1, 2]))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="eta"):
        d.p_sample_loop(zero_eps, x_T.shape, noise=x_T, eta=0.0)
