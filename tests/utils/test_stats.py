"""sda.utils.stats: known answers for the Wilson interval and the Frechet distance; the bootstrap's width
against the normal approximation, its clustering by base image and its seed stage."""

from __future__ import annotations

import numpy as np
import pytest

from sda.utils import stats


def test_wilson_known_answer() -> None:
    lo, hi = stats.wilson(8, 10)  # p = 0.8, n = 10: (0.4902, 0.9433) by the formula
    assert lo == pytest.approx(49.017, abs=1e-2) and hi == pytest.approx(94.333, abs=1e-2)
    assert stats.wilson(0, 5)[0] == 0.0 and stats.wilson(5, 5)[1] == 100.0


def test_bootstrap_width_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random(2000) < 0.7).astype(float)
    b = stats.bootstrap(stats.mean_pct, x, n_boot=1000)
    half = 100 * 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / len(x))  # 2.0 points
    assert b["value"] == pytest.approx(100 * x.mean())
    assert (b["hi"] - b["lo"]) / 2 == pytest.approx(half, rel=0.15)


def test_bootstrap_resamples_base_images_together() -> None:
    """Three copies of each image carry no more information than one: with groups the interval keeps the
    width of the unique images; without, it shrinks by about sqrt(3)."""
    rng = np.random.default_rng(2)
    x = (rng.random(600) < 0.6).astype(float)
    copies, groups = np.repeat(x, 3), np.repeat(np.arange(600), 3)
    unique = stats.bootstrap(stats.mean_pct, x, n_boot=800)
    grouped = stats.bootstrap(stats.mean_pct, copies, groups=groups, n_boot=800)
    naive = stats.bootstrap(stats.mean_pct, copies, n_boot=800)
    w = {k: v["hi"] - v["lo"] for k, v in (("u", unique), ("g", grouped), ("n", naive))}
    assert w["g"] == pytest.approx(w["u"], rel=0.15) and w["n"] == pytest.approx(w["u"] / np.sqrt(3), rel=0.15)


def test_bootstrap_seeds_are_a_random_effect_and_pairs_stay_paired() -> None:
    rng = np.random.default_rng(3)
    base = (rng.random(500) < 0.8).astype(float)
    steady = np.stack([base] * 4)  # (S, I): the seeds agree
    split = np.stack([base, 1 - base, base, 1 - base])  # two seeds at 80%, two at 20%
    w_steady, w_split = (stats.bootstrap(stats.mean_pct, x, n_boot=400) for x in (steady, split))
    assert w_split["hi"] - w_split["lo"] > 3 * (w_steady["hi"] - w_steady["lo"])  # the seed spread counts
    same = stats.bootstrap(stats.diff_pct, steady, steady, n_boot=200)
    assert same["value"] == same["lo"] == same["hi"] == 0.0  # a column against itself: exactly no difference
    with pytest.raises(ValueError, match="same"):
        stats.bootstrap(stats.diff_pct, steady, steady[:2])


def test_ratio_and_share() -> None:
    assert stats.ratio(np.array([1, 1, 0, 0.0]), np.array([1, 1, 1, 1.0])) == 0.5
    # source clean 100%, projected 50%, a model on the projections 75%: half of the gap won back
    assert stats.share_recovered(np.ones(4), np.array([1, 1, 0, 0.0]), np.array([1, 1, 1, 0.0])) == 0.5


def test_frechet_distance_known_answers() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(400, 6))
    shift = np.array([1.0, -2.0, 0, 0, 0.5, 0])
    assert stats.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert stats.frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-6)
    # the same mean, the covariance scaled by 4: Tr(C + 4C - 2 * 2C) = Tr(C)
    assert stats.frechet_distance(a, 2 * a + a.mean(0) * -1) == pytest.approx(
        np.trace(np.cov(a, rowvar=False)), rel=1e-5
    )


def test_domain_accuracy_tells_apart_only_what_differs() -> None:
    rng = np.random.default_rng(5)
    same = stats.domain_accuracy(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)))
    apart = stats.domain_accuracy(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 3.0)
    assert 35 < same < 65 and apart > 95


def test_cell_mean_bootstrap_pairs_cells_by_base_image() -> None:
    """The mean over cells (corruptions) of each column, resampling base images: its point is the plain mean of the
    cells' accuracies, a column against itself differs by exactly 0, and its width matches the generic bootstrap."""
    rng = np.random.default_rng(6)
    cells, groups = 3, 400
    a = (rng.random((cells, groups)) < 0.7).astype(float)  # one image per cell and base image
    b = (rng.random((cells, groups)) < 0.5).astype(float)
    counts = np.ones((cells, groups))
    out = stats.cell_mean_bootstrap({"a": a, "b": b}, counts, {"a-b": ("a", "b"), "a-a": ("a", "a")}, n_boot=600)
    assert out["a"]["value"] == pytest.approx(100 * a.mean(1).mean())
    assert out["a-b"]["value"] == pytest.approx(100 * (a.mean() - b.mean()))
    assert out["a-a"]["lo"] == out["a-a"]["hi"] == 0.0
    generic = stats.bootstrap(stats.mean_pct, a.mean(0), n_boot=600)  # each base image's mean over the cells
    width = out["a"]["hi"] - out["a"]["lo"]
    assert width == pytest.approx(generic["hi"] - generic["lo"], rel=0.2)
    missing = counts.copy()
    missing[0, :100] = 0  # a cell that lacks some base images still averages its own
    partial = stats.cell_mean_bootstrap({"a": a * missing}, missing, {}, n_boot=100)
    assert partial["a"]["value"] == pytest.approx(100 * np.mean([a[0, 100:].mean(), a[1].mean(), a[2].mean()]))
