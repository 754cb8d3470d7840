"""Ensemble modes against hand-computed cases (reference semantics: softmax re-applied to scores)."""

import math

import pytest
import torch

from sda.eval import ensemble as E


def _sm(v):  # softmax of a python list
    ex = [math.exp(a) for a in v]
    return [e / sum(ex) for e in ex]


def _H(v):  # entropy of softmax(v)
    p = _sm(v)
    return -sum(q * math.log(q) for q in p)


def _var(v):  # unbiased variance
    m = sum(v) / len(v)
    return sum((a - m) ** 2 for a in v) / (len(v) - 1)


S1 = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
S2 = torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25]])  # row 2 ties with S1


def test_scores_match_hand_computation():
    for i in range(3):
        r = S1[i].tolist()
        assert E.score_entropy(S1)[i].item() == pytest.approx(_H(r), rel=1e-6)
        assert E.score_confidence(S1)[i].item() == pytest.approx(max(_sm(r)), rel=1e-6)
        assert E.score_variance(S1)[i].item() == pytest.approx(_var(r), rel=1e-5)


def test_first_second_sum_sda():
    assert torch.equal(E.combine("first", S1, S2), S1)
    assert torch.equal(E.combine("second", S1, S2), S2)
    assert torch.allclose(E.combine("sum", S1, S2), S1 + S2)
    assert torch.allclose(E.combine("sda", S1, S2), S1 + S2)


@pytest.mark.parametrize(
    "mode,score,lower_wins", [("entropy", _H, True), ("confidence", lambda v: max(_sm(v)), False), ("var", _var, False)]
)
def test_select_modes_and_ties_pick_projected(mode, score, lower_wins):
    out = E.combine(mode, S1, S2)
    take2 = E.pick_projected(S1, S2, mode)
    for i in range(3):
        a, b = score(S1[i].tolist()), score(S2[i].tolist())
        if i == 2:  # identical rows: tie -> projected image
            expect2 = True
        else:
            expect2 = (b < a) if lower_wins else (b > a)
        assert bool(take2[i]) == expect2, (mode, i)
        assert torch.equal(out[i], S2[i] if expect2 else S1[i])
    # explicit cases: row 0 S1 is more peaked -> raw; row 1 S2 is more peaked -> projected
    assert take2[:2].tolist() == [False, True]


def test_exact_tie_with_different_rows_picks_projected():
    a = torch.tensor([[0.6, 0.3, 0.1]])
    b = torch.tensor([[0.1, 0.6, 0.3]])  # a permutation: same entropy, confidence and variance
    for mode in ("entropy", "confidence", "var"):
        assert E.pick_projected(a, b, mode).item() is True
        assert torch.equal(E.combine(mode, a, b), b)


def test_weighted_sums():
    es = E.combine("entropy_sum", S1, S2)
    cs = E.combine("confidence_sum", S1, S2)
    for i in range(3):
        r1, r2 = S1[i].tolist(), S2[i].tolist()
        for j in range(3):
            assert es[i, j].item() == pytest.approx(r1[j] * _H(r2) + r2[j] * _H(r1), rel=1e-5)
            assert cs[i, j].item() == pytest.approx(r1[j] * max(_sm(r1)) + r2[j] * max(_sm(r2)), rel=1e-5)


def test_fuse_weights_and_blend():
    for mode, f, swap in (
        ("entropy_fuse", _H, True),
        ("confidence_fuse", lambda v: max(_sm(v)), False),
        ("var_fuse", _var, False),
    ):
        w = E.fuse_weights(S1, S2, mode)
        for i in range(3):
            a, b = f(S1[i].tolist()), f(S2[i].tolist())
            expect = _sm([b, a]) if swap else _sm([a, b])
            assert w[i].tolist() == pytest.approx(expect, rel=1e-5)
        assert torch.allclose(w.sum(1), torch.ones(3))
    x1 = torch.zeros(3, 3, 2, 2)
    x2 = torch.ones(3, 3, 2, 2)
    w = torch.tensor([[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]])
    blend = E.fuse_images(x1, x2, w)
    assert blend[:, 0, 0, 0].tolist() == [0.75, 0.0, 0.5]
    with pytest.raises(ValueError):
        E.combine("entropy_fuse", S1, S2)
    with pytest.raises(ValueError):
        E.combine("nope", S1, S2)
