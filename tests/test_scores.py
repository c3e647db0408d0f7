"""CCS, categories, CCS@K, agreement and R^2 on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ccs import scores
from ccs.llm import UNKNOWN


class Scripted:
    """A backend with fixed answers: the label, and the set of texts that match it."""

    name = "scripted"

    def __init__(self, label, matching):
        self._label, self.matching = label, set(matching)

    def label(self, texts):
        return self._label

    def judge(self, text, concept):
        return int(text in self.matching)


@pytest.fixture
def table():
    # 8 heads of layers 10-11; CCS 5,5,4,3,3,1,0 and one unknown
    rows = [
        (10, 0, "location", 5),
        (10, 1, "colour", 5),
        (10, 2, "animal", 4),
        (10, 3, "scene", 3),
        (11, 0, "bird", 3),
        (11, 1, "food", 1),
        (11, 2, "letters", 0),
        (11, 3, UNKNOWN, math.nan),
    ]
    return pd.DataFrame(
        [{"layer": l, "head": h, "name": scores.head_name(l, h), "label": lab, "ccs": c} for l, h, lab, c in rows]
    )


def test_score_head_counts_matches():
    texts = list("abcde")
    assert scores.score_head(texts, Scripted("colour", "abd")) == {
        "label": "colour",
        "judgements": [1, 1, 0, 1, 0],
        "ccs": 3.0,
        "flagged": False,
    }
    r = scores.score_head(texts, Scripted(UNKNOWN, "abcde"))  # unknown: flagged, not judged, no CCS
    assert r["flagged"] and r["judgements"] == [0] * 5 and math.isnan(r["ccs"])


def test_score_heads_table():
    heads = [{"layer": 9, "head": 2, "texts": list("abcde")}, {"layer": 11, "head": 0, "texts": list("vwxyz")}]
    t = scores.score_heads(heads, Scripted("shape", "abcdez"))
    assert list(t["name"]) == ["L9.H2", "L11.H0"] and list(t["ccs"]) == [5.0, 1.0]


def test_categories_as_in_the_paper():
    cat = scores.category
    assert [cat(c) for c in [5, 4, 3, 2, 1, 0]] == ["high", None, "moderate", None, "low", "low"]
    assert cat(math.nan) == UNKNOWN
    loose = scores.Categories(high=4, moderate=(2, 3), low=1)
    assert [cat(c, loose) for c in [5, 4, 3, 2, 1]] == ["high", "high", "moderate", "moderate", "low"]


def test_category_counts(table):
    assert scores.category_counts(table) == {"high": 2, "moderate": 2, "low": 2, UNKNOWN: 1}
    assert scores.category_counts(table, unknown="low") == {"high": 2, "moderate": 2, "low": 3, UNKNOWN: 0}


def test_ccs_at_k(table):
    # 7 scored heads: CCS 5,5,4,3,3,1,0
    assert scores.ccs_at(table, 5) == pytest.approx(2 / 7)
    assert scores.ccs_at_all(table) == pytest.approx({0: 1 / 7, 1: 1 / 7, 2: 0, 3: 2 / 7, 4: 1 / 7, 5: 2 / 7})
    assert scores.ccs_at(table, 0, unknown="low") == pytest.approx(2 / 8)
    assert sum(scores.ccs_at_all([5, 5, 0, 3]).values()) == pytest.approx(1)


def test_agreement_hand_computed():
    a, b = [1, 1, 0, 0], [1, 0, 0, 0]
    # observed agreement 3/4; chance (2/4*1/4 + 2/4*3/4) = 1/2; kappa = (3/4-1/2)/(1-1/2) = 1/2
    r = scores.agreement(a, b)
    assert r["cohen_kappa"] == pytest.approx(0.5)
    assert r["spearman"] == pytest.approx(1 / math.sqrt(3))  # Pearson of the tied ranks
    assert scores.agreement([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx({"cohen_kappa": 1.0, "spearman": 1.0, "kendall": 1.0})
    with pytest.raises(ValueError):
        scores.agreement([1, 0], [1])


def test_accuracies():
    assert scores.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert scores.label_accuracy(["Colors", "animal", "unknown"], ["colour", "bird", "unknown"]) == 1.0
    assert scores.label_accuracy(["colour", "insect", "unknown"], ["shape", "bird", "people"]) == 0.0
    assert scores.majority_concept(["colour", "shape", "colour", "scene", "shape"]) == "colour"


def test_evaluate_on_hand_made_heads():
    heads = [
        {"concept": "colour", "texts": list("abcde"), "truth": [1, 1, 1, 0, 0]},
        {"concept": "shape", "texts": list("vwxyz"), "truth": [1, 1, 1, 1, 1]},
    ]
    r = scores.evaluate(Scripted("colour", "abcdvw"), heads)
    # labels: colour (right), colour (wrong); CCS: 4 vs 3, 2 vs 5; judge vs truth: 4 + 2 of 10 right
    assert r["label_accuracy"] == 0.5 and r["ccs_mae"] == 2.0 and r["judge_accuracy"] == 0.6


def test_attribute_r2():
    rng = np.random.default_rng(0)
    colour = np.repeat(["red", "blue"], 50)
    shape = np.tile(["circle", "square"], 50)
    signal = np.where(colour == "red", 1.0, -1.0)[:, None] * np.array([1.0, 2.0, 0.0])
    head0 = signal  # a pure colour head
    head1 = rng.normal(size=(100, 3))  # noise
    x = np.stack([head0, head1], axis=1)  # [N, H, D]
    r2 = scores.attribute_r2(x, pd.DataFrame({"colour": colour, "shape": shape}))
    assert r2.loc[0, "colour"] == pytest.approx(1.0) and r2.loc[0, "shape"] == pytest.approx(0.0)
    assert r2.loc[1].max() < 0.1
    # hand-computed: groups {0,0} and {2,2} around mean 1: between = 4*1 = total -> 1; shape splits evenly -> 0
    small = scores.attribute_r2(np.array([[0.0], [0.0], [2.0], [2.0]]), pd.DataFrame({"a": [0, 0, 1, 1], "b": [0, 1, 0, 1]}))
    assert small.loc[0].tolist() == pytest.approx([1.0, 0.0])
    assert scores.top_r2_agreement(["colours", UNKNOWN], r2) == 1.0


def test_ground_truth_on_world_records():
    heads = [
        {"layer": 3, "head": 0, "texts": list("abcde"), "concepts": ["colour"] * 4 + ["shape"]},
        {"layer": 3, "head": 1, "texts": list("vwxyz"), "concepts": ["shape", "scene", "shape", "count", "size"]},
    ]
    t = scores.score_heads(heads, Scripted("colour", "abcdvw"))
    assert list(t["concepts"][0]) == ["colour"] * 4 + ["shape"]  # record fields ride along
    r = scores.ground_truth(t)
    # labels colour/colour vs majority colour/shape; judge: head 0 all 5 right, head 1 v,w wrong (not colour)
    # true CCS 4 and 2 vs CCS 4 and 2
    assert r["label_accuracy"] == 0.5 and r["judge_accuracy"] == 0.8 and r["ccs_mae"] == 0.0
