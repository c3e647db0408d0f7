"""Head sets on hand-made CCS tables: the paper's categories, ranked fallback, random and equal-count
baselines (seeded, degenerate draws detected), ground-truth and published sets, concept sets."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ccs import headsets
from ccs.llm import UNKNOWN
from ccs.scores import head_name


def make(rows, layers=(10, 11), heads=4):
    """A CCS table from (label, ccs[, confidence]) rows, filled into layers x heads in order."""
    names = [(l, h) for l in layers for h in range(heads)]
    out = []
    for (l, h), row in zip(names, rows):
        label, ccs, *conf = row
        out.append(
            {
                "layer": l,
                "head": h,
                "name": head_name(l, h),
                "label": label,
                "ccs": ccs,
                **({"confidence": conf[0]} if conf else {}),
            }
        )
    return pd.DataFrame(out)


@pytest.fixture
def table():
    # 8 heads of layers 10-11; CCS 5,5,4,3,3,1,0 and one unknown
    return make(
        [
            ("location", 5),
            ("colour", 5),
            ("animal", 4),
            ("scene", 3),
            ("bird", 3),
            ("food", 1),
            ("letters", 0),
            (UNKNOWN, math.nan),
        ]
    )


EVERY = headsets.all_heads(12, 4)


def test_categories(table):
    assert headsets.high_heads(table) == ["L10.H0", "L10.H1"]
    assert headsets.low_heads(table) == ["L11.H1", "L11.H2"]
    assert headsets.low_heads(table, unknown="low") == ["L11.H1", "L11.H2", "L11.H3"]


def test_concept_heads(table):
    assert headsets.concept_heads(table, "location") == ["L10.H0"]
    assert headsets.concept_heads(table, "Geolocation") == ["L10.H0"]  # a synonym
    assert headsets.concept_heads(table, "locations") == ["L10.H0", "L10.H3"]  # the paper's group
    assert headsets.concept_heads(table, "animals") == ["L10.H2", "L11.H0"]
    assert headsets.concept_heads(table, "animals", min_ccs=4) == ["L10.H2"]


def test_paper_sets_and_seeded_random_baseline(table):
    s = headsets.build(table, every_head=EVERY, seeds=5)
    assert (s.high, s.low, s.rule, s.random_pool) == (["L10.H0", "L10.H1"], ["L11.H1", "L11.H2"], "categories", "analysed layers")
    assert len(s.random) == 5 and all(len(r) == 2 and not set(r) & set(s.high) for r in s.random)
    assert all(set(r) <= set(table["name"]) for r in s.random)  # from the analysed layers
    assert len({tuple(r) for r in s.random}) > 1  # the seeds draw different sets
    again = headsets.build(table, every_head=EVERY, seeds=5)
    assert again.random == s.random and again.equal == s.equal  # reproducible
    # 2 high and 2 low: the equal-count sets are the sets themselves, drawn once, and the page is told
    assert s.equal == [(s.high, s.low)]
    assert any("only 1 distinct pair of sets exists, so it is compared instead of 5" in n for n in s.notes)
    assert any("unknown" in n for n in s.notes)
    conds = s.conditions()
    assert conds["original"] == [] and conds["high"] == s.high and "random/4" in conds
    assert not any(c.startswith("equal") for c in conds)  # they would repeat high and low


def test_equal_count_draws_differ_when_they_can():
    t = make([("colour", 5)] * 4 + [("x", 0)] * 2 + [("y", 3)] * 2)
    s = headsets.build(t, every_head=EVERY, seeds=5)
    assert all(len(h) == 2 and set(h) <= set(s.high) and l == s.low for h, l in s.equal)
    assert len(s.equal) == 5  # C(4,2) = 6 possible draws of the high heads
    assert s.conditions()["equal-high/4"] == s.equal[4][0]


def test_ranked_fallback_when_a_category_is_too_small():
    t = make(
        [
            ("colour", 5, 0.2),
            ("colour", 4, 0.1),
            ("shape", 4, 0.3),
            ("count", 3, 0.1),
            ("count", 2, 0.2),
            ("size", 2, 0.05),
            ("size", 2, 0.1),
            ("scene", 3, 0.2),
        ]
    )
    s = headsets.build(t, every_head=EVERY, k=2)
    assert s.rule == "ranked" and any("ranked" in n for n in s.notes)
    # CCS 5, then one of the two heads tied at CCS 4, drawn (the labeler's confidence breaks no tie)
    assert {tuple(h) for h, _ in s.ties} == {("L10.H0", "L10.H1"), ("L10.H0", "L10.H2")}
    assert {tuple(sorted(l)) for _, l in s.ties} <= {("L11.H0", "L11.H1"), ("L11.H0", "L11.H2"), ("L11.H1", "L11.H2")}
    assert headsets.build(t, every_head=EVERY).rule == "ranked"  # default k: 8 // 4 = 2
    with pytest.raises(ValueError, match="cannot rank"):
        headsets.tie_draws(t, 5, 3)


def test_degenerate_random_draws_fall_back_to_all_layers():
    # 8 analysed heads of which 4 high: random sets of 4 from the other 4 are all the same set
    t = make([("colour", 5)] * 4 + [("x", 0)] * 2 + [("y", 3)] * 2)
    s = headsets.build(t, every_head=EVERY, seeds=5)
    assert s.random_pool == "all layers" and any("all layers" in n for n in s.notes)
    assert len({tuple(r) for r in s.random}) == 5
    assert all(not set(r) & set(s.high) for r in s.random)
    assert set().union(*map(set, s.random)) - set(t["name"])  # heads of other layers are drawn


def test_empty_sets_are_refused():
    with pytest.raises(ValueError, match="empty"):
        headsets.build(high=["L11.H0"], low=[], analysed=EVERY, every_head=EVERY)


def test_published_and_truth_tables():
    pub = headsets.published("ViT-B-32-OpenAI")
    assert pub["high"][0] == "L11.H5" and len(pub["low"]) == 4
    s = headsets.build(
        high=pub["high"],
        low=pub["low"],
        analysed=headsets.all_heads(12, 12)[96:],
        every_head=headsets.all_heads(12, 12),
        source="paper",
    )
    assert s.rule == "categories" and len(s.random[0]) == 8 and s.source == "paper"
    with pytest.raises(KeyError, match="no head lists"):
        headsets.published("ccs-tiny")
    t = make([("colour", 5), ("shape", 1)], heads=1)
    t["concepts"] = [["colour"] * 4 + ["shape"], ["count", "count", "size", "scene", "shape"]]
    truth = headsets.truth_table(t)
    assert list(truth["label"]) == ["colour", "count"] and list(truth["ccs"]) == [4.0, 2.0]
    assert headsets.jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3) and headsets.jaccard([], []) == 1


def test_concept_sets(table):
    sets = headsets.concept_sets(table, seeds=3)
    assert sets["location"]["heads"] == ["L10.H0"] and len(sets["location"]["random"]) == 3
    assert all(not set(r) & set(v["heads"]) and len(r) == len(v["heads"]) for v in sets.values() for r in v["random"])
    assert UNKNOWN not in sets


def test_sets_by_source():
    t = make([("colour", 5), ("colour", 5), ("x", 0), ("y", 1), ("z", 3)] + [("w", 4)] * 3)
    run = headsets.from_source("run", t, model="ccs-tiny", every_head=EVERY)
    assert run.source == "this run" and run.high == ["L10.H0", "L10.H1"]
    with pytest.raises(ValueError, match="ground truth"):
        headsets.from_source("truth", t, model="ccs-tiny", every_head=EVERY)
    t["concepts"] = [["colour"] * 5] * 2 + [["a", "b", "c", "d", "e"]] * 2 + [["shape"] * 5] * 4
    truth = headsets.from_source("truth", t, model="ccs-tiny", every_head=EVERY)
    assert truth.source == "ground truth" and truth.rule == "categories"
    assert len(truth.high) == 6 and truth.low == ["L10.H2", "L10.H3"]  # 5 distinct concepts: true CCS 1
    with pytest.raises(KeyError, match="no head lists"):
        headsets.from_source("paper", t, model="ccs-tiny", every_head=EVERY)
    with pytest.raises(ValueError, match="'run', 'truth', 'function' or 'paper'"):
        headsets.from_source("best", t, model="ccs-tiny", every_head=EVERY)
    # the sets a page shows beside its own: the other source, never the paper's
    beside = headsets.other_source("run", t, model="ccs-tiny", every_head=EVERY)
    assert beside.source == "ground truth" and beside.high == truth.high
    assert headsets.other_source("truth", t, model="ccs-tiny", every_head=EVERY).source == "this run"
    assert headsets.other_source("paper", t, model="ccs-tiny", every_head=EVERY) is None
    assert headsets.other_source("run", t.drop(columns="concepts"), model="ccs-tiny", every_head=EVERY) is None


def test_ranked_sets_cut_through_ties_draw_the_tied_heads_and_nothing_of_the_labeler_breaks_them():
    # one CCS-5 head, then 5 heads tied at 4 and 2 at 2: k = 2 cuts the high set through the 4s
    t = make(
        [("a", 5, 0.1), ("b", 4, 0.9), ("c", 4, 0.2), ("d", 4, 0.5), ("e", 4, 0.3), ("f", 4, 0.4), ("g", 2, 0.8), ("h", 2, 0.7)]
    )
    s = headsets.build(t, every_head=EVERY, seeds=20, k=2)
    assert s.rule == "ranked" and not s.paper_test and s.test == "ranked"
    assert "hold 1 head with CCS 5 and 0 with CCS" in s.why_not_paper()
    assert len(s.ties) == headsets.TIE_DRAWS and any("tied at CCS 4" in n for n in s.notes)
    assert s.ties == headsets.tie_draws(t, 2, headsets.TIE_DRAWS)[0]
    highs = {tuple(h) for h, _ in headsets.tie_draws(t, 2, 20)[0]}
    tied = {"L10.H1", "L10.H2", "L10.H3", "L11.H0", "L11.H1"}
    assert all(h[0] == "L10.H0" for h in highs) and {h[1] for h in highs} <= tied
    assert len({h[1] for h in highs}) >= 4  # the draws spread over the tied heads
    assert all(l == ["L11.H2", "L11.H3"] for _, l in s.ties)  # the low cut runs through no tie
    cond = s.conditions()
    assert "high" not in cond and cond["high/3"] == s.ties[3][0] and cond["low/0"] == ["L11.H2", "L11.H3"]
    assert all(not set(r) & set(s.ties[i % len(s.ties)][0]) for i, r in enumerate(s.random))  # random draw i avoids its tie draw
    # the confidence column changes nothing: ties are drawn, not broken by the labeler
    again = headsets.build(t.assign(confidence=t["confidence"][::-1].to_numpy()), every_head=EVERY, seeds=20, k=2)
    assert again.ties == s.ties
    # no tie at the cuts: one draw, the plain conditions
    u = make([("a", 5), ("b", 4), ("c", 3), ("d", 3), ("e", 3), ("f", 3), ("g", 2), ("h", 1)])
    one = headsets.build(u, every_head=EVERY, seeds=20, k=2)
    assert one.ties == [] and one.high == ["L10.H0", "L10.H1"] and one.low == ["L11.H2", "L11.H3"]
    assert "high" in one.conditions()


def test_the_paper_s_sets_are_the_headline_when_both_categories_hold_two_heads(table):
    s = headsets.build(table, every_head=EVERY)
    assert s.paper_test and s.test == "paper" and s.why_not_paper() == "" and s.counts == {"high": 2, "low": 2}


def test_truth_sets_ignore_the_labeler_s_confidence():
    t = make([("a", 3, 0.9), ("b", 3, 0.1)])
    t["concepts"] = [["shape"] * 3 + ["colour"] * 2, ["colour"] * 3 + ["scene"] * 2]
    assert "confidence" not in headsets.truth_table(t)


def test_function_sets_take_the_most_and_least_specialised_heads_in_the_paper_s_proportions():
    names = [head_name(l, h) for l in (10, 11) for h in range(12)]  # 24 heads: 4 high, 2 low
    share = pd.Series([0.9 - 0.03 * i for i in range(24)], index=names)
    share.iloc[5] = float("nan")  # a head nothing explains is never "most specialised"
    s = headsets.from_source(
        "function", None, model="ccs-tiny", every_head=EVERY + names, function=pd.DataFrame({"share": share})
    )
    assert s.source == "function" and s.test == "function" and s.high == names[:4] and len(s.low) == 2 and names[5] in s.low
    with pytest.raises(ValueError, match="function"):
        headsets.from_source("function", None, model="ccs-tiny", every_head=EVERY)
