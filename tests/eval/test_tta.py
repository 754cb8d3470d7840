"""The adaptation baselines on a toy: known-answer losses and BatchNorm statistics; test-time BN, TENT and
MEMO reproduce results computed by hand (numpy, finite differences) on 2-image batches of a 3-class toy;
TENT touches only the normalisation layers' affine parameters; MEMO never changes the source model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sda.eval import tta
from sda.eval.tta import TTAConfig

EPS = 1e-5


class Toy(nn.Module):
    """features (N, 2) -> norm -> linear -> 3 logits; mmpretrain's call signature."""

    def __init__(self, norm: str = "bn", seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.norm = nn.BatchNorm1d(2, eps=EPS) if norm == "bn" else nn.LayerNorm(2, eps=EPS)
        self.head = nn.Linear(2, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            if norm == "bn":
                self.norm.running_mean.copy_(torch.tensor([0.3, -0.2]))
                self.norm.running_var.copy_(torch.tensor([1.5, 0.7]))
        self.double().eval()

    def forward(self, x: torch.Tensor, mode: str = "tensor") -> torch.Tensor:
        return self.head(self.norm(x))


X = torch.tensor([[1.0, 2.0], [-0.5, 0.3], [2.0, -1.0], [0.1, 0.4]], dtype=torch.float64)  # 4 "images"


def np_params(m: Toy) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in m.named_parameters()}


def np_forward(p: dict[str, np.ndarray], x: np.ndarray, stats: tuple | None = None) -> np.ndarray:
    """BatchNorm with the batch's statistics (biased variance, as training-mode BN) or ``stats``, then linear."""
    mean, var = stats if stats is not None else (x.mean(0), x.var(0))
    y = (x - mean) / np.sqrt(var + EPS) * p["norm.weight"] + p["norm.bias"]
    return y @ p["head.weight"].T + p["head.bias"]


def np_entropy(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return -(p * np.log(p)).sum(1)


def numeric_grad(f, p: dict[str, np.ndarray], names: list[str], h: float = 1e-6) -> dict[str, np.ndarray]:
    out = {}
    for n in names:
        g = np.zeros_like(p[n])
        for i in np.ndindex(p[n].shape):
            up, dn = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            up[n][i] += h
            dn[n][i] -= h
            g[i] = (f(up) - f(dn)) / (2 * h)
        out[n] = g
    return out


def test_losses_known_answers():
    assert torch.allclose(tta.entropy(torch.zeros(1, 3)), torch.tensor([math.log(3)]))
    assert tta.entropy(torch.tensor([[50.0, 0.0, 0.0]]))[0] < 1e-15
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    p = logits.softmax(1).mean(0).numpy()
    assert math.isclose(float(tta.marginal_entropy(logits)), float(-(p * np.log(p)).sum()), rel_tol=1e-6)
    one = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(tta.marginal_entropy(one), tta.entropy(one)[0])  # one view: plain entropy


def test_test_time_bn_uses_the_batch_statistics():
    source = Toy()
    with torch.no_grad():
        got = tta.test_time_bn(source)(X[:2]).numpy()
    assert np.allclose(got, np_forward(np_params(source), X[:2].numpy()), atol=1e-10)
    with torch.no_grad():
        assert not torch.allclose(source(X[:2]), torch.from_numpy(got))  # the source keeps its running stats


def test_prior_batchnorm_mixes_source_and_batch_statistics():
    source = Toy()
    prior = tta.with_prior_bn(Toy(), 16.0)
    x = X[:2].numpy()
    w = 16.0 / 17.0
    stats = (w * np.array([0.3, -0.2]) + (1 - w) * x.mean(0), w * np.array([1.5, 0.7]) + (1 - w) * x.var(0, ddof=1))
    with torch.no_grad():
        got = prior(X[:2]).numpy()
    assert np.allclose(got, np_forward(np_params(source), x, stats), atol=1e-10)


def test_norm_and_tent_streams_reproduce_hand_computation():
    cfg = TTAConfig(tta_batch_size=2, tent_lr=0.1, tent_momentum=0.9)
    source, p = Toy(), np_params(Toy())
    key = (3, "fog/5")
    order = list(tta.stream_batches(4, 2, *key))
    norm = tta.adapt_subset("norm", source, lambda i: X[i], lambda t: t, 4, cfg, key)
    for batch in order:
        assert np.allclose(norm[batch].numpy(), np_forward(p, X[batch].numpy()), atol=1e-6)
    tent = tta.adapt_subset("tent", source, lambda i: X[i], lambda t: t, 4, cfg, key)
    names = ["norm.weight", "norm.bias"]
    buf, q = None, {k: v.copy() for k, v in p.items()}
    for batch in order:
        xb = X[batch].numpy()
        assert np.allclose(tent[batch].numpy(), np_forward(q, xb), atol=1e-5)  # the loss's forward
        g = numeric_grad(lambda pp, xb=xb: np_entropy(np_forward(pp, xb)).mean(), q, names)
        buf = g if buf is None else {n: 0.9 * buf[n] + g[n] for n in names}
        for n in names:
            q[n] = q[n] - 0.1 * buf[n]
    assert not np.allclose(tent[order[1]].numpy(), norm[order[1]].numpy())  # the second batch saw the update


def test_tent_streams_several_batches_and_resets_between_subsets():
    """TENT is an online stream: with several batches per subset the later ones are predicted by the updated model;
    each corruption/severity starts again from the source (nothing carries over from another subset)."""
    cfg = TTAConfig(tta_batch_size=2, tent_lr=0.5, tent_momentum=0.9)
    source = Toy()
    order = list(tta.stream_batches(4, 2, 3, "snow/5"))
    assert len(order) == 2  # a stream of two batches
    snow = tta.adapt_subset("tent", source, lambda i: X[i], lambda t: t, 4, cfg, (3, "snow/5"))
    norm = tta.adapt_subset("norm", source, lambda i: X[i], lambda t: t, 4, cfg, (3, "snow/5"))
    assert torch.allclose(snow[order[0]], norm[order[0]], atol=1e-6)  # the first batch: predicted before any update
    assert not torch.allclose(snow[order[1]], norm[order[1]])  # the second: by the updated affine parameters
    tta.adapt_subset("tent", source, lambda i: X[[(k + 1) % 4 for k in i]], lambda t: t, 4, cfg, (3, "fog/5"))
    again = tta.adapt_subset("tent", source, lambda i: X[i], lambda t: t, 4, cfg, (3, "snow/5"))
    assert torch.equal(again, snow)  # reset: the fog stream left nothing behind


def test_tent_updates_only_the_affine_parameters():
    source = Toy()
    model, opt = tta.tent_model(source, TTAConfig(tent_lr=0.5))
    assert {n for n, q in model.named_parameters() if q.requires_grad} == {"norm.weight", "norm.bias"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tta.tent_step(model, opt, X[:2])
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"norm.weight", "norm.bias"}
    assert all(torch.equal(v, Toy().state_dict()[k]) for k, v in source.state_dict().items())  # source intact


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_memo_reproduces_hand_computation_and_leaves_the_source(norm, monkeypatch):
    cfg = TTAConfig(memo_lr=0.2, memo_views=3, memo_prior=16.0)
    source = Toy(norm)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    views = X[1:4]  # three "augmented views" of X[0]
    monkeypatch.setattr(tta, "memo_views", lambda image, c, seed: views)
    got = tta.memo_predict(source, X[0], lambda t: t, cfg, seed=7).numpy()
    assert all(torch.equal(v, before[k]) for k, v in source.state_dict().items())  # episodic: untouched
    p = np_params(source)

    def forward(pp: dict, x: np.ndarray) -> np.ndarray:
        if norm == "ln":
            y = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + EPS)
            return (y * pp["norm.weight"] + pp["norm.bias"]) @ pp["head.weight"].T + pp["head.bias"]
        w = 16.0 / 17.0
        rm, rv = source.norm.running_mean.numpy(), source.norm.running_var.numpy()
        var = x.var(0, ddof=1) if len(x) > 1 else np.zeros(2)
        return np_forward(pp, x, (w * rm + (1 - w) * x.mean(0), w * rv + (1 - w) * var))

    def marginal(pp: dict) -> float:
        z = forward(pp, views.numpy())
        prob = np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
        m = prob.mean(0)
        return float(-(m * np.log(m)).sum())

    g = numeric_grad(marginal, p, list(p))
    q = {n: p[n] - 0.2 * g[n] for n in p}
    assert np.allclose(got, forward(q, X[:1].numpy())[0], atol=1e-5)


def test_streams_are_seeded_permutations():
    a = list(tta.stream_batches(10, 4, 0, "fog/5"))
    assert sorted(i for b in a for i in b) == list(range(10)) and [len(b) for b in a] == [4, 4, 2]
    assert [len(b) for b in tta.stream_batches(9, 4, 0, "x")] == [4, 5]  # no batch of a single image
    assert a == list(tta.stream_batches(10, 4, 0, "fog/5")) and a != list(tta.stream_batches(10, 4, 1, "fog/5"))


def test_memo_views_are_seeded_augmentations():
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8))
    cfg = TTAConfig(memo_views=4)
    a, b = tta.memo_views(img, cfg, 5), tta.memo_views(img, cfg, 5)
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a, tta.memo_views(img, cfg, 6))
