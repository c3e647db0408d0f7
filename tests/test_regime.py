"""The regime study: its measures of a model, and a configuration trained and measured end to end."""
import json

import numpy as np
import pandas as pd
import pytest

from ccs import regime, scores, world


def test_true_ccs_counts_the_most_common_concept():
    assert regime.true_ccs(["shape"] * 5) == 5
    assert regime.true_ccs(["colour", "shape", "colour", "scene", "colour"]) == 3
    assert regime.true_ccs(["colour", "shape", "animal", "scene", "count"]) == 1


def test_specialisation_is_the_top_attribute_s_share_of_what_all_explain():
    r2 = pd.DataFrame({"colour": [0.6, 0.2, 0.0], "shape": [0.2, 0.2, 0.0]})
    s = scores.specialisation(r2)
    assert list(s["top"][:1]) == ["colour"] and s["share"][0] == pytest.approx(0.75)
    assert s["share"][1] == pytest.approx(0.5)
    assert np.isnan(s["share"][2])  # a head nothing explains has no share, not a perfect one


def test_summary_counts_the_paper_s_categories():
    heads = pd.DataFrame({"true_ccs": [5, 5, 1, 2, 3, 0], "share": [0.9, 0.7, 0.3, 0.5, 0.6, 0.1],
                          "top": ["shape", "scene", "colour", "count", "shape", "size"],
                          "label": ["shape", "colour", "colour", "count", "shape", "shape"]})
    s = regime.summary(heads)
    assert (s["high"], s["low"], s["heads"]) == (2, 2, 6)
    assert s["true_ccs_counts"] == {0: 1, 1: 1, 2: 1, 3: 1, 4: 0, 5: 2}
    assert s["specialised_share"] == pytest.approx(3 / 6)
    assert s["label_names_top"] == pytest.approx(4 / 6)


def test_configurations_change_only_their_levers():
    base, rich = regime.train_config("base"), regime.train_config("rich")
    deep, captions = regime.train_config("deep"), regime.train_config("captions")
    assert (base.world, rich.world) == ("base", "rich")
    assert deep.config != base.config and deep.world == base.world
    assert captions.single > base.single and captions.config == base.config
    assert {c.seed for c in (base, rich, deep, captions)} == {regime.study()["seed"]}
    assert {c.pairs for c in (base, rich, deep, captions)} == {regime.study()["pairs"]}
    with pytest.raises(ValueError, match="unknown configuration"):
        regime.train_config("enormous")


def test_a_configuration_is_trained_measured_and_resumed(tmp_path):
    try:
        regime.run("rich", pairs=512, runs=tmp_path / "runs", results=tmp_path / "res", progress=False)
        assert world.current() == "rich"
    finally:
        world.use("base")
    saved = json.loads((tmp_path / "res" / "rich.json").read_text())
    assert saved["world"] == "rich" and saved["steps"] == 2 and saved["heads"] == 32
    assert sum(saved["true_ccs_counts"].values()) == 32 == len(saved["per_head"])
    assert saved["high"] == saved["true_ccs_counts"]["5"]
    assert set(saved["accuracy"]) == {str(s) for s in regime.EVAL_SEEDS}
    assert len(saved["accuracy"]["2468"]) == 7 and saved["accuracy"]["2468"]["scene"] < 0.5  # 16 scenes, untrained
    wall = saved["train_wall_s"]
    again = regime.run("rich", runs=tmp_path / "runs", results=tmp_path / "res", progress=False)  # resumes: no step
    world.use("base")
    assert again["steps"] == 2 and again["train_wall_s"] == wall


def _row(name, high, low, acc, wall=60):
    return {"configuration": name, "high_share": high, "low_share": low, "mean_accuracy": acc, "train_wall_s": wall}


def test_the_selection_rule_takes_the_scarcer_category_and_ignores_inaccurate_and_reference_runs():
    rows = [_row("a", 0.30, 0.02, 0.9), _row("b", 0.12, 0.06, 0.9), _row("c", 0.5, 0.5, 0.5),
            _row("zoo:x", 0.5, 0.5, 0.99)]
    assert regime.select(rows)["configuration"] == "b"  # 0.75 of the way beats a's 0.25
    assert regime.score(rows[1]) == pytest.approx(0.75)
    assert regime.select([_row("b", 0.15, 0.08, 0.9, 90), _row("d", 0.2, 0.1, 0.9, 30)])["configuration"] == "d"
    assert regime.select([_row("b", 0.15, 0.08, 0.9, 90), _row("d", 0.15, 0.08, 0.9, 30)])["configuration"] == "d"
    assert regime.select(rows[2:]) is None


def test_the_committed_study_page_is_the_generated_one():
    from pathlib import Path

    book = Path(__file__).resolve().parents[1] / "book"
    rows = regime.results(book / "regime")
    assert rows, "no measured configuration"
    assert (book / "regime.md").read_text() == regime.page_text(rows), "run `ccs regime page`"
