"""The shifted-data and OOD page's claims (ccs.ood) on hand-made pruning results."""

import numpy as np
import pytest

from ccs import evaluate, ood, pruning


def results(scores: dict) -> pruning.Results:
    """{(condition, split): per-image p_true} on one task 'shape', with an MCM score per image."""
    r = pruning.Results()
    for (c, split), v in scores.items():
        v = np.asarray(v, float)
        r.scores[c, split, "shape"] = {"p_true": v, "correct": (v > 0.5).astype(float), pruning.DETECTION: v}
    return r


def test_extra_drop_is_the_drop_on_the_shifted_twin_minus_the_drop_on_the_image():
    r = results(
        {
            ("original", "test"): [1, 1, 1, 1],
            ("high", "test"): [0.9, 0.9, 0.9, 0.9],
            ("original", "sketch"): [0.8, 0.8, 0.8, 0.8],
            ("high", "sketch"): [0.4, 0.5, 0.6, 0.5],
        }
    )
    est, lo, hi = ood.extra_drop(r, "high", "sketch")
    assert est == pytest.approx(0.3 - 0.1) and lo <= est <= hi


def test_high_against_random_or_low_averages_the_shifted_splits_per_image_and_draw():
    base = {("original", s): [1.0] * 4 for s in ("test", "sketch", "noisy")}
    r = results(
        {
            **base,
            ("high", "sketch"): [0.2] * 4,
            ("high", "noisy"): [0.4] * 4,
            ("low", "sketch"): [0.9] * 4,
            ("low", "noisy"): [0.9] * 4,
            ("random/0", "sketch"): [0.8] * 4,
            ("random/0", "noisy"): [0.8] * 4,
            ("random/1", "sketch"): [0.6] * 4,
            ("random/1", "noisy"): [0.6] * 4,
        }
    )
    assert ood.high_vs(r, ["sketch", "noisy"], "low") == pytest.approx((0.6, 0.6, 0.6))  # 0.9 - mean(0.2, 0.4)
    est, lo, hi = ood.high_vs(r, ["sketch", "noisy"], "random")
    assert est == pytest.approx(0.7 - 0.3) and lo == pytest.approx(0.6 - 0.3) and hi == pytest.approx(0.8 - 0.3)
    # a prefix reads another source's sets
    with pytest.raises(KeyError, match="function: random"):
        ood.high_vs(r, ["sketch"], prefix="function: ")


def test_the_detector_and_its_auroc_drop():
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(1, 0.3, 200), rng.normal(0, 0.3, 200)  # separable: AUROC near 1
    blurred = rng.normal(0.2, 0.3, 200)  # pruned: the in-distribution scores fall towards the OOD ones
    r = results(
        {
            ("original", "test"): inside,
            ("original", "novel-shapes"): outside,
            ("high", "test"): blurred,
            ("high", "novel-shapes"): outside,
        }
    )
    d = ood.detection(r, "original", "novel-shapes", "shape")
    assert d["auroc"] == pytest.approx(evaluate.auroc(inside, outside)) and d["auroc_lo"] <= d["auroc"] <= d["auroc_hi"]
    est, lo, hi = ood.auroc_drop(r, "shape", n_boot=200)
    assert est == pytest.approx(evaluate.auroc(inside, outside) - evaluate.auroc(blurred, outside))
    assert 0 < lo <= est <= hi  # pruning made the detector worse, beyond the images' chance
    assert not ood.detector_at_chance(r, "shape")
    # the bootstraps count draws (`evaluate.ResampledAuroc`): the same values as resampling the scores
    rng = np.random.default_rng(0)
    boot = [evaluate.auroc(rng.choice(inside, 200), rng.choice(outside, 200)) for _ in range(300)]
    assert (d["auroc_lo"], d["auroc_hi"]) == (np.quantile(boot, 0.025), np.quantile(boot, 0.975))
    rng, boot = np.random.default_rng(0), []
    for _ in range(200):  # one high set: no tie draw
        i, o = rng.integers(0, 200, 200), rng.integers(0, 200, 200)
        boot.append(evaluate.auroc(inside[i], outside[o]) - evaluate.auroc(blurred[i], outside[o]))
    assert (lo, hi) == (np.quantile(boot, 0.025), np.quantile(boot, 0.975))
    same = results({("original", "test"): inside, ("original", "novel-shapes"): rng.normal(1, 0.3, 200)})
    assert ood.detector_at_chance(same, "shape")  # OOD images scored like the test images: AUROC near 0.5
