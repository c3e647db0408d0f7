"""The shifted-data and out-of-distribution page's claims (notebooks/ood.py) on a pruning run
(`ccs.pruning.Results`): extra drops on the shifted twins of the test images, the high set against
the low and random sets over the shifted splits, and the MCM detector's AUROC with and without it."""

from __future__ import annotations

import numpy as np

from ccs import evaluate, intervals
from ccs.pruning import DETECTION, Results


def extra_drop(r: Results, name: str, split: str, measure: str = "p_true") -> tuple[float, float, float]:
    """Per image: the drop from pruning `name` on its shifted twin in `split` minus the drop on the
    test image itself; the mean and its paired interval (positive: shifted data suffer more)."""
    shift = r.per_image("original", split, measure) - r.per_image(name, split, measure)
    base = r.per_image("original", "test", measure) - r.per_image(name, "test", measure)
    keep = ~(np.isnan(shift) | np.isnan(base))
    return intervals.paired_ci(shift[keep], base[keep])


def high_vs(
    r: Results, splits: list[str], base: str = "random", measure: str = "p_true", prefix: str = ""
) -> tuple[float, float, float]:
    """The high set against `base` (random or low) over the shifted splits together: per image and
    draw, the base's score minus the high set's, averaged over the splits (the same objects drawn
    several ways); the interval resamples the images and the draws."""
    a = np.mean([r.per_draw(prefix + base, s, measure) for s in splits], 0)
    b = np.mean([r.per_draw(prefix + "high", s, measure) for s in splits], 0)
    keep = ~(np.isnan(a).any(0) | np.isnan(b).any(0))
    return intervals.two_level_ci(a[:, keep], b[:, keep])


def _scores(r: Results, condition: str, split: str, task: str) -> np.ndarray:
    return r.scores[condition, split, task][DETECTION]


def detection(r: Results, name: str, out: str, task: str, n_boot: int = 300, seed: int = 0) -> dict:
    """The MCM detector of `task`'s prompts, test images against `out`'s, with `name` pruned (a group's
    draws pooled): AUROC and FPR95 (`evaluate.ood_metrics`) and the AUROC's bootstrap interval."""
    s_in = np.concatenate([_scores(r, c, "test", task) for c in r.members(name)])
    s_out = np.concatenate([_scores(r, c, out, task) for c in r.members(name)])
    rng, at, n_in, n_out = np.random.default_rng(seed), evaluate.ResampledAuroc(s_in, s_out), len(s_in), len(s_out)
    # the same draws as rng.choice(s_in, n_in), rng.choice(s_out, n_out), as counts
    boot = [
        at(evaluate.counts(rng.integers(0, n_in, n_in), n_in), evaluate.counts(rng.integers(0, n_out, n_out), n_out))
        for _ in range(n_boot)
    ]
    return {
        **evaluate.ood_metrics(s_in, s_out),
        "auroc_lo": float(np.quantile(boot, 0.025)),
        "auroc_hi": float(np.quantile(boot, 0.975)),
    }


def detector_at_chance(r: Results, task: str, out: str = "novel-shapes") -> bool:
    """Whether the unpruned MCM detector's AUROC interval on `out` includes 0.5: then pruning cannot
    show anything about detection, and `auroc_drop` gets no verdict."""
    d = detection(r, "original", out, task)
    return d["auroc_lo"] <= 0.5 <= d["auroc_hi"]


def auroc_drop(
    r: Results, task: str, out: str = "novel-shapes", prefix: str = "", n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """AUROC unpruned minus AUROC with the high set pruned (the mean over its tie draws, if any); the
    bootstrap resamples the in- and out-of-distribution images together for both conditions (paired)
    and the tie draws with them."""
    orig = _scores(r, "original", "test", task), _scores(r, "original", out, task)
    high = [(_scores(r, c, "test", task), _scores(r, c, out, task)) for c in r.members(prefix + "high")]

    at_orig, at_high = evaluate.ResampledAuroc(*orig), [evaluate.ResampledAuroc(*h) for h in high]

    def diff(c_in, c_out, members):  # c_in, c_out: how often each image is drawn
        return at_orig(c_in, c_out) - np.mean([at_high[m](c_in, c_out) for m in members])

    rng = np.random.default_rng(seed)
    n_in, n_out, k = len(orig[0]), len(orig[1]), len(high)
    boot = [
        diff(
            evaluate.counts(rng.integers(0, n_in, n_in), n_in),
            evaluate.counts(rng.integers(0, n_out, n_out), n_out),
            rng.integers(0, k, k) if k > 1 else [0],
        )
        for _ in range(n_boot)
    ]
    whole = diff(np.ones(n_in, int), np.ones(n_out, int), range(k))
    return whole, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))
