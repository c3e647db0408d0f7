"""Intervals for every claim: percentile bootstrap intervals of a mean, of a paired difference, of a
difference against a baseline drawn at random (resampling the draws and the images together), and of
a rank correlation; and the spread of a measure across random seeds. Each returns (estimate, low,
high), what `ccs.verdicts.verdict` reads."""

from __future__ import annotations

import numpy as np


def _bootstrap(data: tuple, statistic, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    if all(np.ptp(d) == 0 for d in data):  # no spread: every resample gives the same value
        v = float(statistic(*data, axis=-1))
        return v, v
    ci = bootstrap(
        data,
        statistic,
        paired=len(data) > 1,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def mean_ci(x, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The mean of per-item values (e.g. per-image correctness: an accuracy) and its percentile
    bootstrap interval over the items (scipy.stats.bootstrap): (mean, low, high)."""
    x = np.asarray(x, dtype=float)
    return (float(x.mean()), *_bootstrap((x,), lambda a, axis: a.mean(axis), confidence, n_resamples, seed))


def paired_ci(a, b, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) for two conditions measured on the same items (e.g. per-image correctness
    with and without pruning), with a paired bootstrap interval: items are resampled together, so
    the variation shared by both conditions (easy and hard images) cancels. (diff, low, high)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired measurements need equal shapes, got {a.shape} and {b.shape}")
    stat = lambda x, y, axis: x.mean(axis) - y.mean(axis)  # noqa: E731
    return (float(a.mean() - b.mean()), *_bootstrap((a, b), stat, confidence, n_resamples, seed))


def two_level_ci(
    a, b, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0, paired_draws: bool = False
) -> tuple[float, float, float]:
    """mean(a) - mean(b) when a side is a baseline drawn at random: a and b are [draws, items]
    matrices (a fixed condition is one row), e.g. per-image scores under each of 20 random head sets.
    The percentile bootstrap resamples both sources of chance: the draws (each side's rows, or the
    same rows of both when `paired_draws`, as equal-count draws made together) and the items (the
    same items for both sides, so image difficulty cancels as in `paired_ci`). With one draw a side,
    this is `paired_ci`. (diff, low, high)."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"both sides need the same items, got {a.shape[1]} and {b.shape[1]}")
    if paired_draws and len(a) != len(b):
        raise ValueError(f"paired draws need as many on each side, got {len(a)} and {len(b)}")
    if len(a) == 1 and len(b) == 1:
        return paired_ci(a[0], b[0], confidence, n_resamples, seed)
    rng, n = np.random.default_rng(seed), a.shape[1]

    def weights(k, rows=n_resamples):  # bootstrap resamples as counts of k uniform draws: [rows, k], rows sum to 1
        # (a multinomial with equal probabilities; counting draws is ~30x faster than rng.multinomial)
        idx = rng.integers(0, k, size=(rows, k)) + k * np.arange(rows)[:, None]
        return np.bincount(idx.ravel(), minlength=rows * k).reshape(rows, k) / k

    wa = weights(len(a))
    wb = wa if paired_draws else weights(len(b))
    stats = np.empty(n_resamples)
    for i in range(0, n_resamples, 250):  # in chunks: [chunk, items] at a time
        j = slice(i, i + 250)
        items = weights(n, len(stats[j]))
        stats[j] = ((wa[j] @ a - wb[j] @ b) * items).sum(1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def spearman_ci(x, y, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rho of paired values (e.g. each head's CCS and the cost of pruning it), with a
    percentile bootstrap interval over the pairs: (rho, low, high)."""
    from scipy.stats import bootstrap, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = float(spearmanr(x, y).statistic)
    with np.errstate(all="ignore"):
        ci = bootstrap(
            (x, y),
            lambda a, b: spearmanr(a, b).statistic,
            paired=True,
            vectorized=False,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return rho, float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def spread(values) -> dict[str, float]:
    """The spread of a measure across random seeds: mean, standard deviation (ddof 1), min and max."""
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
    }
