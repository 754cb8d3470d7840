"""Intervals and distances (the mini study, the powered test and eval's tables): pure functions of numpy arrays.

- :func:`wilson`: the 95% Wilson score interval of a proportion (one accuracy on n independent images);
- :func:`bootstrap`: a percentile interval of any statistic of per-image outcomes, resampling *base* images
  (every corrupted or projected version of one clean image moves together: they are not independent) and,
  when there are several seeds, the seeds too (a two-stage bootstrap: seeds as a random effect);
- :func:`frechet_distance`: the Frechet distance between two Gaussian fits of feature sets (FID's formula);
- :func:`domain_accuracy`: how well a linear classifier tells two feature sets apart (cross-validated).

Outcomes are arrays ``(S, I)``: S seeds by I scored images, 1.0 for a correct prediction, with ``groups`` (I,)
naming each image's base image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct / n``, in percent."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 1 else x  # (S, I)


def bootstrap(
    stat: Callable[..., float],
    *outcomes: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """``stat(*outcomes)`` and its percentile interval.

    ``outcomes``: arrays (S, I) or (I,) over the same seeds and images (e.g. the correctness of two columns, for
    a paired difference). Each replicate draws S seeds with replacement, then base images (``groups``, default
    every image its own) with replacement, keeps every image of each drawn base image, and evaluates ``stat`` on
    the resampled arrays. Returns {"value", "lo", "hi", "n_boot"}.
    """
    arrays = [_as_2d(o) for o in outcomes]
    s, i = arrays[0].shape
    if any(a.shape != (s, i) for a in arrays):
        raise ValueError("every outcome array must have the same (seeds, images) shape")
    groups = np.arange(i) if groups is None else np.asarray(groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(keys))]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        seeds = rng.integers(0, s, s) if s > 1 else np.zeros(1, dtype=int)
        picked = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        values[b] = stat(*(a[np.ix_(seeds, picked)] for a in arrays))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return {"value": float(stat(*arrays)), "lo": float(lo), "hi": float(hi), "n_boot": n_boot}


def mean_pct(x: np.ndarray) -> float:
    """Top-1 (%) of correctness outcomes."""
    return 100.0 * float(np.mean(x))


def diff_pct(a: np.ndarray, b: np.ndarray) -> float:
    """Paired difference of two columns' top-1 (percentage points)."""
    return 100.0 * float(np.mean(a) - np.mean(b))


def ratio(a: np.ndarray, b: np.ndarray) -> float:
    """Ratio of two columns' top-1 (e.g. gate (e): a classifier on low-passed images over the source on clean)."""
    den = float(np.mean(b))
    return float(np.mean(a)) / den if den > 0 else 0.0


def share_recovered(source_clean: np.ndarray, source_proj: np.ndarray, model_proj: np.ndarray) -> float:
    """Gate (d)'s share: how much of the gap (clean - projected) a model on the projected images wins back."""
    gap = float(np.mean(source_clean) - np.mean(source_proj))
    return float(np.mean(model_proj) - np.mean(source_proj)) / gap if gap > 0 else 0.0


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^1/2) of two feature sets (N, D) (FID's distance)."""
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(ca @ cb, disp=False)
    root = root.real  # sqrtm of a product of covariances: imaginary parts are rounding
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * root))


def domain_accuracy(a: np.ndarray, b: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy (%) of a logistic regression telling ``a`` (N, D) from ``b`` (M, D) on balanced
    classes (the larger set subsampled): 50 means the sets are indistinguishable to a linear probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    a, b = a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]
    x, y = np.concatenate([a, b]), np.r_[np.zeros(n), np.ones(n)]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return 100.0 * float(cross_val_score(probe, x, y, cv=cv).mean())


def cell_mean_bootstrap(
    sums: dict[str, np.ndarray],
    counts: np.ndarray,
    pairs: dict[str, tuple[str, str]],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Percentile intervals of the mean over cells (e.g. the 15 corruptions) of each column's top-1 (%), and of
    paired differences between columns, resampling *base images* with replacement (every cell's version of a base
    image moves with it).

    ``sums[column]`` (cells, groups): correct predictions of each cell on each base image; ``counts`` (cells,
    groups): images of each cell and base image (0 where a cell lacks it); ``pairs``: name -> (column a, column b)
    for the differences a - b. Returns {name: {"value", "lo", "hi"}} for every column and pair.
    """
    counts = counts.astype(np.float64)
    valid = counts.sum(1) > 0

    def means(w: np.ndarray) -> dict[str, np.ndarray]:  # w (R, groups) -> {column: (R,) mean over cells}
        n = w @ counts.T  # (R, cells)
        out = {}
        for k, v in sums.items():
            acc = np.divide(w @ v.T.astype(np.float64), n, out=np.full_like(n, np.nan), where=n > 0)  # (R, cells)
            out[k] = 100.0 * np.nanmean(acc[:, valid], axis=1)
        return out

    groups = counts.shape[1]
    point = means(np.ones((1, groups)))
    draws: dict[str, list[np.ndarray]] = {k: [] for k in [*sums, *pairs]}
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, 100):
        r = min(100, n_boot - start)
        w = np.stack([np.bincount(rng.integers(0, groups, groups), minlength=groups) for _ in range(r)])
        m = means(w.astype(np.float64))
        for k in sums:
            draws[k].append(m[k])
        for name, (a, b) in pairs.items():
            draws[name].append(m[a] - m[b])
    alpha = (1 - level) / 2
    out = {}
    for k, parts in draws.items():
        v = np.concatenate(parts)
        value = point[k][0] if k in sums else point[pairs[k][0]][0] - point[pairs[k][1]][0]
        lo, hi = np.nanquantile(v, [alpha, 1 - alpha])
        out[k] = {"value": float(value), "lo": float(lo), "hi": float(hi)}
    return out
