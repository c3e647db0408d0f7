"""The generated replication page: claims per model and set source, pooled across models."""

import json

import numpy as np
import pytest

from ccs import record, replication


def _run(runs, model, experiment, rep, weights="trained"):
    (runs / model).mkdir(parents=True, exist_ok=True)
    (runs / model / f"{experiment}.json").write_text(json.dumps({"weights": weights, "replication": rep}))


def _claim(est, lo, hi, verdict=None, test=None):
    return record.row((est, lo, hi), verdict, test)


def test_rows_for_both_sources_and_every_model(tmp_path):
    runs = tmp_path / "runs"
    _run(
        runs,
        "a",
        "pruning",
        {
            "this run": {"pruning-high-vs-low": _claim(0.05, 0.04, 0.06)},
            "ground truth": {"pruning-high-vs-low": _claim(-0.03, -0.04, -0.02)},
        },
    )
    _run(runs, "b", "pruning", {"this run": {"pruning-high-vs-low": _claim(0.02, -0.01, 0.05, test="ranked")}})
    text = replication.page(["a", "b"], runs)
    section = text.split("## Soft pruning: high-CCS heads cost more than low-CCS heads\n")[1].split("\n## ")[0]
    assert "| a | this run |  | +5.00 pp [4.00, 6.00] | supported |" in section
    assert "| a | ground truth |  | \u22123.00 pp [\u22124.00, \u22122.00] | contradicted |" in section
    assert "| b | this run | ranked (secondary) | +2.00 pp [\u22121.00, 5.00] | inconclusive |" in section
    # every verdict is counted, and which rows rest on the secondary analysis is said
    assert (
        "*this run* sets: supported on 1, contradicted on 0, inconclusive on 1 of 2 models (on ranked sets "
        "for 1 of them: the paper's test cannot be formed there); pooled"
    ) in section
    assert "*ground truth* sets: supported on 0, contradicted on 1, inconclusive on 0 of 1 model; one model" in section
    assert "the paper's claim" in section
    importance = text.split("## A head's CCS predicts")[1].split("\n## ")[0]
    assert "a question this book adds" in importance
    assert "No run records this claim yet." in text.split("## Concept pruning")[1].split("\n## ")[0]


def test_pooled_estimate_widens_with_the_spread_between_models():
    """Random effects: two models that disagree give a wider interval than their own intervals imply."""
    close = replication.pooled([_claim(0.05, 0.04, 0.06), _claim(0.051, 0.041, 0.061)])
    apart = replication.pooled([_claim(0.01, 0.0, 0.02), _claim(0.09, 0.08, 0.10)])
    assert close["tau2"] == pytest.approx(0, abs=1e-9) and apart["tau2"] > 0
    assert close["low"] < 0.0505 < close["high"] and close["high"] - close["low"] < 0.02
    assert apart["high"] - apart["low"] > 0.05 and apart["low"] < 0.05 < apart["high"]
    se = 0.01 / replication.Z  # fixed effect of two equal variances: mean, se / sqrt(2)
    assert close["estimate"] == pytest.approx(0.0505, abs=1e-6)
    assert close["high"] - close["low"] == pytest.approx(2 * replication.Z * se / np.sqrt(2), rel=1e-3)


def test_a_changed_json_changes_the_page(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "book" / "replication.md"
    out.parent.mkdir()
    _run(runs, "a", "video", {"this run": {"video-high-vs-random": _claim(0.01, -0.02, 0.04)}})
    replication.write(out, runs, ["a"])
    first = out.read_text()
    figure = out.parent / "replication" / "replication-video-high-vs-random.png"
    assert figure.is_file() and "replication/replication-video-high-vs-random.png" in first
    stamp = figure.stat().st_mtime_ns
    replication.write(out, runs, ["a"])  # nothing changed: nothing rewritten
    assert out.read_text() == first and figure.stat().st_mtime_ns == stamp
    _run(runs, "a", "video", {"this run": {"video-high-vs-random": _claim(0.08, 0.05, 0.11)}})
    replication.write(out, runs, ["a"])
    assert out.read_text() != first and "+8.00 pp [5.00, 11.00] | supported" in out.read_text()
    included = (out.parent / "replication" / "summary-video-high-vs-random.md").read_text()
    # what the chapter includes
    assert "*this run* sets: supported on 1, contradicted on 0, inconclusive on 0 of 1 model" in included


def test_random_weights_are_flagged(tmp_path):
    _run(tmp_path, "m", "ccs", {"this run": {"ccs-high-share": _claim(0.1, 0.05, 0.2)}}, weights="random")
    assert "| m (random weights) | this run |" in replication.page(["m"], tmp_path)


def test_shares_are_pooled_on_the_logit_scale_and_stay_inside_0_and_1():
    rows = [_claim(0.0, 0.0, 0.107), _claim(0.031, 0.006, 0.157), _claim(0.0, 0.0, 0.107)]
    p = replication.pooled(rows, bounded=True)
    assert 0 <= p["low"] <= p["estimate"] <= p["high"] <= 1
    plain = replication.pooled(rows)
    assert plain["low"] < 0  # the symmetric pool leaves [0, 1], which is why shares are not pooled so


def test_the_plain_words_answer_follows_the_verdicts(tmp_path):
    runs = tmp_path / "runs"
    for m, (est, lo, hi) in {"a": (-0.02, -0.03, -0.01), "b": (0.0, -0.01, 0.01)}.items():
        _run(runs, m, "pruning", {"this run": {"pruning-high-vs-random": _claim(est, lo, hi, test="ranked")}})
        _run(runs, m, "concepts", {"this run": {"concept-diagonal": _claim(0.1, 0.05, 0.15)}})
    text = replication.answer(replication.collect(["a", "b"], runs), ["a", "b"])
    assert text.startswith("On none of the book's 2 models can the paper's own test be formed")
    assert "costs no more than pruning as many random heads: less on 1, and no detectable difference on 1 of the 2" in text
    assert "costs that concept's own task more than the other tasks on 2 of 2 models." in text
    _run(runs, "a", "pruning", {"this run": {"pruning-high-vs-random": _claim(0.02, 0.01, 0.03, test="paper")}})
    _run(runs, "b", "pruning", {"this run": {"pruning-high-vs-random": _claim(0.02, 0.01, 0.03, test="paper")}})
    text = replication.answer(replication.collect(["a", "b"], runs), ["a", "b"])
    assert (
        "On all 2 of the book's models the paper's own test can be formed; pruning the most consistent heads "
        "costs more than pruning as many random heads on every one of them." in text
    )


def test_seed_agreement_counts_verdicts_and_a_claim_replicates_only_on_every_seed(tmp_path):
    import pandas as pd

    by_seed = pd.DataFrame(
        {
            "analysis seed": [0, 1, 2, 0, 1, 2],
            "sets": ["this run"] * 3 + ["function"] * 3,
            "high vs low verdict": ["supported"] * 3 + ["supported", "inconclusive", "supported"],
            "high vs random verdict": ["contradicted", "contradicted", "inconclusive"] + ["supported"] * 3,
        }
    )
    a = record.seed_agreement(by_seed)
    assert a.loc[("this run", "high vs low"), "holds on every seed"] == "yes"
    assert a.loc[("function", "high vs low"), "holds on every seed"] == "no"
    assert a.loc[("this run", "high vs random"), "agree"] == "2 of 3 contradicted"
    seeds = record.agreement_record(a)
    assert seeds["this run"]["pruning-high-vs-low"] == {"agree": "3 of 3 supported", "replicated": True}
    runs = tmp_path / "runs"
    _run(runs, "a", "pruning", {"this run": {"pruning-high-vs-low": _claim(0.05, 0.04, 0.06)}})
    (runs / "a" / "seeds.json").write_text(json.dumps({"seed_agreement": seeds}))
    text = replication.page(["a"], runs)
    section = text.split("## Soft pruning: high-CCS heads cost more than low-CCS heads\n")[1].split("\n## ")[0]
    assert "| supported | 3 of 3 supported |" in section
    assert "it holds on every analysis seed on 1 of 1 models" in section


def test_seed_agreement_covers_every_page_s_claims_and_says_where_a_seed_could_not_test_one():
    import numpy as np
    import pandas as pd

    by_seed = pd.DataFrame(
        {
            "analysis seed": [0, 1, 2, 0, 1, 2],
            "sets": ["this run"] * 3 + ["ground truth"] * 3,
            "shifted: high vs random verdict": ["supported"] * 6,
            "concept diagonal verdict": ["supported", np.nan, "supported", np.nan, np.nan, np.nan],
        }
    )
    a = record.seed_agreement(by_seed)
    assert a.loc[("this run", "concept diagonal"), "verdicts by seed"] == "0: supported, 1: no verdict, 2: supported"
    assert a.loc[("this run", "concept diagonal"), "holds on every seed"] == "no"  # one seed could not test it
    assert ("ground truth", "concept diagonal") not in a.index  # no seed could: nothing to count
    assert ("this run", "high vs low") not in a.index  # a claim the page did not run
    seeds = record.agreement_record(a)
    assert seeds["ground truth"]["shifted-high-vs-random"] == {"agree": "3 of 3 supported", "replicated": True}


def test_a_share_s_interval_stays_inside_zero_and_one():
    est, lo, hi = record.share(3, 32)
    assert est == 3 / 32 and 0 < lo < est < hi < 1
    assert record.share(0, 32)[1] == 0 and record.share(32, 32)[2] == pytest.approx(1)
    assert record.row(record.share(0, 32))["verdict"] == "inconclusive"  # none found: not shown to exist
    assert record.row(record.share(1, 32))["verdict"] == "supported"
