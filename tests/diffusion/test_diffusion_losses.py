"""Training losses on a dummy model, checked against hand-written numpy formulas."""

import math

import numpy as np
import pytest
import torch

from sda.diffusion import create_diffusion, discretized_gaussian_log_likelihood, normal_kl


def _ncdf(x):
    return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _np_nll(x, mean, log_scale):
    inv = np.exp(-log_scale)
    hi = _ncdf(inv * (x - mean + 1 / 255))
    lo = _ncdf(inv * (x - mean - 1 / 255))
    lp = np.where(
        x < -0.999,
        np.log(np.maximum(hi, 1e-12)),
        np.where(x > 0.999, np.log(np.maximum(1 - lo, 1e-12)), np.log(np.maximum(hi - lo, 1e-12))),
    )
    return -lp


class Dummy(torch.nn.Module):
    """eps = a * x_t, variance value v (learned range)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.5))
        self.v = torch.nn.Parameter(torch.tensor(0.2))

    def forward(self, x, t):
        return torch.cat([self.a * x, self.v.expand_as(x)], dim=1)  # (N, 2C, H, W)


@pytest.mark.parametrize("rescale", [False, True])
def test_hybrid_loss(rescale):
    d = create_diffusion("", rescale_learned_sigmas=rescale)
    model = Dummy()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 256, (2, 3, 4, 4), generator=g).float() / 127.5 - 1  # 8-bit data in [-1, 1]
    noise = torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([0, 300])
    terms = d.training_losses(model, x0, t, noise=noise)

    acp = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    betas = np.linspace(1e-4, 0.02, 1000)
    x0n, nn = x0.double().numpy(), noise.double().numpy()
    vb = []
    for b, ti in enumerate(t.tolist()):
        xt = np.sqrt(acp[ti]) * x0n[b] + np.sqrt(1 - acp[ti]) * nn[b]
        eps = 0.5 * xt
        assert terms["mse"][b].item() == pytest.approx(np.mean((nn[b] - eps) ** 2), rel=1e-5)
        prev = acp[ti - 1] if ti > 0 else 1.0
        pred_x0 = (xt - np.sqrt(1 - acp[ti]) * eps) / np.sqrt(acp[ti])
        coef1 = betas[ti] * np.sqrt(prev) / (1 - acp[ti])
        coef2 = (1 - prev) * np.sqrt(1 - betas[ti]) / (1 - acp[ti])
        mean = coef1 * pred_x0 + coef2 * xt
        post_var = lambda i: betas[i] * (1 - (acp[i - 1] if i else 1.0)) / (1 - acp[i])  # noqa: E731
        min_log = np.log(post_var(max(ti, 1)))
        logvar = 0.6 * np.log(betas[ti]) + 0.4 * min_log  # frac = (0.2 + 1) / 2
        if ti == 0:  # decoder NLL in bits
            vb.append(np.mean(_np_nll(x0n[b], mean, 0.5 * logvar)) / math.log(2))
        else:  # KL(posterior || model) in bits
            true_mean = coef1 * x0n[b] + coef2 * xt
            kl = 0.5 * (-1 + logvar - min_log + np.exp(min_log - logvar) + (true_mean - mean) ** 2 * np.exp(-logvar))
            vb.append(np.mean(kl) / math.log(2))
    scale = 1.0  # T / 1000 with T = 1000
    np.testing.assert_allclose(terms["vb"].detach().numpy(), np.array(vb) * scale, rtol=1e-4)
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])

    # the VB term trains only the variance: no gradient reaches the mean prediction through it
    ga, gv = torch.autograd.grad(terms["vb"].sum(), [model.a, model.v])
    assert ga.item() == 0.0 and gv.item() != 0.0


def test_rescaled_mse_scales_vb_with_respaced_steps():
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    noise = torch.randn(2, 3, 4, 4)
    t = torch.tensor([3, 7])
    plain = create_diffusion("", diffusion_steps=100).training_losses(Dummy(), x0, t, noise=noise)
    resc = create_diffusion("", diffusion_steps=100, rescale_learned_sigmas=True).training_losses(
        Dummy(), x0, t, noise=noise
    )
    torch.testing.assert_close(resc["vb"], plain["vb"] * 0.1)
    torch.testing.assert_close(resc["mse"], plain["mse"])


def test_kl_loss_and_fixed_variance():
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    t = torch.tensor([0, 5])
    d = create_diffusion("", diffusion_steps=50, use_kl=True)
    out = d.training_losses(Dummy(), x0, t, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss"} and out["loss"].shape == (2,)
    d = create_diffusion("", diffusion_steps=50, learn_sigma=False)
    out = d.training_losses(lambda x, t: 0.5 * x, x0, t, noise=torch.zeros_like(x0))
    assert set(out) == {"loss", "mse"}
    xt = d.q_sample(x0, t, noise=torch.zeros_like(x0))
    torch.testing.assert_close(out["mse"], (0.25 * xt**2).mean(dim=(1, 2, 3)))


def test_normal_kl_and_likelihood_basics():
    m = torch.zeros(3)
    assert torch.equal(normal_kl(m, 0.0, m, 0.0), torch.zeros(3))
    kl = normal_kl(torch.tensor(1.0), math.log(2.0), 0.0, 0.0)
    assert kl.item() == pytest.approx(0.5 * (-1 - math.log(2) + 2 + 1))
    x = torch.tensor([-1.0, 0.0, 1.0])
    lp = discretized_gaussian_log_likelihood(x, means=torch.zeros(3), log_scales=torch.full((3,), -3.0))
    np.testing.assert_allclose(-lp.numpy(), _np_nll(x.numpy(), 0.0, -3.0), rtol=1e-5)


class _Oracle(torch.nn.Module):
    """Knows x0: outputs the exact eps or v for x_t (first C channels), a fixed variance value after."""

    def __init__(self, diffusion, x0, target):
        super().__init__()
        self.d, self.x0, self.target = diffusion, x0, target

    def forward(self, x, t):
        acp = torch.from_numpy(self.d.alphas_cumprod)[t].float().view(-1, 1, 1, 1)  # (N, 1, 1, 1)
        eps = (x - acp.sqrt() * self.x0) / (1 - acp).sqrt()
        out = eps if self.target == "eps" else acp.sqrt() * eps - (1 - acp).sqrt() * self.x0
        return torch.cat([out, torch.zeros_like(x)], dim=1)  # (N, 2C, H, W)


def test_v_prediction_known_answers():
    d = create_diffusion("", predict_v=True)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(3, 3, 4, 4, generator=g)
    t = torch.tensor([0, 500, 999])
    acp = torch.from_numpy(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))).float()[t].view(-1, 1, 1, 1)
    # the target is v = sqrt(abar) eps - sqrt(1 - abar) x0, so a model outputting it has zero MSE
    terms = d.training_losses(_Oracle(d, x0, "v"), x0, t, noise=noise)
    torch.testing.assert_close(terms["mse"], torch.zeros(3), atol=1e-7, rtol=0)
    v = acp.sqrt() * noise - (1 - acp).sqrt() * x0
    assert terms["mse"].shape == (3,)
    wrong = d.training_losses(lambda x, tt: torch.cat([v + 0.1, torch.zeros_like(x)], 1), x0, t, noise=noise)
    torch.testing.assert_close(wrong["mse"], torch.full((3,), 0.01), rtol=1e-4, atol=0)
    # the exact v recovers x0 at every noise level, and the posterior equals the eps model's
    x_t = d.q_sample(x0, t, noise=noise)
    out_v = d.p_mean_variance(_Oracle(d, x0, "v"), x_t, t, clip_denoised=False)
    out_eps = create_diffusion("").p_mean_variance(_Oracle(d, x0, "eps"), x_t, t, clip_denoised=False)
    torch.testing.assert_close(out_v["pred_xstart"], x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_v["mean"], out_eps["mean"], atol=1e-5, rtol=0)
    # where eps-prediction amplifies a model error by sqrt(1 / abar - 1) at high noise, v shrinks it
    err = 0.01
    bad_v = d.p_mean_variance(lambda x, tt: _Oracle(d, x0, "v")(x, tt) + err, x_t, t, clip_denoised=False)
    bad_eps = create_diffusion("").p_mean_variance(
        lambda x, tt: _Oracle(d, x0, "eps")(x, tt) + err, x_t, t, clip_denoised=False
    )
    gap_v = (bad_v["pred_xstart"] - x0).abs().amax().item()
    gap_eps = (bad_eps["pred_xstart"][2] - x0[2]).abs().amax().item()
    assert gap_v <= err + 1e-5 and gap_eps > 100 * err


def test_v_and_xstart_prediction_exclude_each_other():
    from sda.diffusion.flags import check_prediction
    from sda.utils.errors import UserError

    with pytest.raises(UserError, match="exclude each other"):  # the one user check, run by every config
        check_prediction({"predict_xstart": True, "predict_v": True})
    with pytest.raises(AssertionError):  # the core's precondition
        create_diffusion("", predict_xstart=True, predict_v=True)
