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
    heads = pd.DataFrame(
        {
            "true_ccs": [5, 5, 1, 2, 3, 0],
            "share": [0.9, 0.7, 0.3, 0.5, 0.6, 0.1],
            "top": ["shape", "scene", "colour", "count", "shape", "size"],
            "label": ["shape", "colour", "colour", "count", "shape", "shape"],
        }
    )
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
    assert again["steps"] == 2 and again["train_wall_s"] == wall and again["threads"] == 1
    # how a run runs may change when it resumes; what it computes may not
    again = regime.run(
        "rich", pairs=99999, threads=2, loader_workers=2, runs=tmp_path / "runs", results=tmp_path / "res", progress=False
    )
    world.use("base")
    cfg = json.loads((tmp_path / "runs" / "rich" / "config.json").read_text())
    assert (cfg["threads"], cfg["loader_workers"], cfg["pairs"], again["steps"]) == (2, 2, 512, 2)


def test_a_full_length_run_is_the_zoo_s_recipe_with_the_configuration_s_levers():
    from ccs import train

    full, short = regime.train_config("rich", full=True, seed=2), regime.train_config("rich")
    zoo = train.TrainConfig()
    assert (full.pairs, full.loader_workers, full.seed) == (zoo.pairs, 1, 2)  # a worker renders: no heap growth
    assert (full.world, full.config) == (short.world, short.config) and short.pairs < full.pairs
    assert [regime.run_name("rich"), regime.run_name("rich", True), regime.run_name("rich", True, 2)] == [
        "rich",
        "rich-full",
        "rich-full-s2",
    ]


GOOD = {"shape": 0.93, "colour": 1.0, "size": 0.96, "texture": 0.88, "position": 1.0, "scene": 1.0, "count": 0.99}


def _row(name, high, low, config="ccs-tiny", full=False, accuracy=GOOD):
    return {
        "configuration": name + ("-full" if full else ""),
        "recipe": name,
        "full": full,
        "seed": 0,
        "high_share": high,
        "low_share": low,
        "config": config,
        "accuracy": {"1": accuracy, "2": accuracy},
    }


def test_the_rule_ranks_by_the_scarcer_category_then_by_ccs5_then_by_size():
    by_low = [_row("base", 0.30, 0.02), _row("rich", 0.12, 0.06), _row("zoo:x", 0.5, 0.5)]
    assert [r["configuration"] for r in regime.rank(by_low)] == ["rich", "base"]  # 0.75 of the way beats 0.25
    assert regime.score(by_low[1]) == pytest.approx(0.75)
    no_low = [_row("base", 0.05, 0.0), _row("heads12", 0.125, 0.0, "ccs-tiny-h12"), _row("rich", 0.125, 0.0)]
    assert [r["configuration"] for r in regime.rank(no_low)] == ["rich", "heads12", "base"]  # tie: the smaller
    # one run with a CCS <= 1 head goes first; the others all score 0 and keep their CCS-5 order
    one_low = [*no_low, _row("grey", 0.031, 0.062)]
    assert [r["configuration"] for r in regime.rank(one_low)] == ["grey", "rich", "heads12", "base"]


def test_the_rule_chooses_the_first_recipe_whose_full_length_run_meets_the_targets():
    short = [_row("rich", 0.2, 0.0), _row("deep", 0.1, 0.0, "ccs-tiny-l8"), _row("zoo:ccs-tiny", 0.031, 0.0)]
    chosen, why = regime.select(short)
    assert chosen is None and "rich** is first in rank and not yet trained at full length" in why
    weak = dict(GOOD, shape=0.871)
    chosen, why = regime.select(
        short + [_row("rich", 0.2, 0.0, full=True, accuracy=weak), _row("deep", 0.1, 0.0, "ccs-tiny-l8", full=True)]
    )
    assert chosen["configuration"] == "deep" and "shape 0.871 < 0.90" in why
    chosen, why = regime.select(short + [_row("rich", 0.03, 0.0, full=True)])  # no more CCS-5 heads than the zoo
    assert chosen is None and "no more than the zoo's 3.1 %" in why
    # the first in rank is untrained: the rule waits for it, and says what it knows further down
    grey = _row("grey", 0.031, 0.062)
    chosen, why = regime.select(short + [grey, _row("rich", 0.2, 0.0, full=True, accuracy=weak)])
    assert chosen is None and why.startswith("**grey** is first in rank and not yet trained")
    assert "; further down the rank, rich at full length misses the concept targets (shape 0.871" in why
    chosen, why = regime.select(short + [grey, _row("deep", 0.1, 0.0, "ccs-tiny-l8", full=True)])
    assert chosen is None and "deep at full length would qualify, after the runs above it" in why
    chosen, why = regime.select(short + [grey, _row("grey", 0.031, 0.062, full=True, accuracy=weak)])
    assert chosen is None and why.startswith("grey at full length misses the concept targets (shape 0.871")
    assert "; **rich**, next in rank, is not yet trained at full length (`ccs regime run rich --full`)" in why
    assert regime.accuracy_misses(_row("x", 0, 0, accuracy=dict(GOOD, colour=0.949))) == [
        "colour 0.949 < 0.95 (seed 1)",
        "colour 0.949 < 0.95 (seed 2)",
    ]


def test_a_configuration_with_a_zoo_model_s_recipe_has_that_model_as_its_full_length_run():
    # base is the zoo's recipe (ccs-tiny, base world, seed 0); grey differs in its world only
    zoo = dict(_row("zoo:ccs-tiny", 0.031, 0.0), recipe=None, full=False)
    base, grey = _row("base", 0.0, 0.0), _row("grey", 0.031, 0.062)
    assert regime.recipe(base) == regime.recipe(zoo) != regime.recipe(grey)
    assert regime.full_run([base, grey, zoo], base) is zoo and regime.full_run([base, grey, zoo], grey) is None
    assert regime.zoo_twins([base, grey, zoo]) == [(base, zoo)]
    other_seed = dict(base, configuration="base-s1", seed=1)  # another seed's run: not the zoo's model
    assert regime.full_run([other_seed, zoo], other_seed) is None
    own = _row("base", 0.2, 0.0, full=True)  # a run of the study's own at full length comes first
    assert regime.full_run([base, zoo, own], base) is own
    chosen, why = regime.select([base, zoo, _row("zoo:ccs-tiny-h4", 0.062, 0.062, "ccs-tiny-h4")])
    assert chosen is None and why == (
        "base at full length (zoo:ccs-tiny, the same recipe and seed) keeps 3.1 % CCS-5 heads, no more than the zoo's 6.2 %"
    )
    assert "base is ccs-tiny;" in regime.twins_text([base, zoo])


def test_the_page_says_how_far_the_full_length_models_got_with_and_without_the_concept_targets():
    def full(name, high, low, accuracy=GOOD, zoo=False):
        r = _row(name, high, low, full=not zoo, accuracy=accuracy)
        r.update(configuration=f"zoo:{name}" if zoo else r["configuration"], heads=32)
        return dict(r, high=round(32 * high), low=round(32 * low))

    weak = dict(GOOD, texture=0.70)
    rows = [_row("rich", 0.2, 0.1), full("rich", 0.0625, 0.0625, weak), full("ccs-tiny", 0.03125, 0.0, zoo=True)]
    meets, better = regime.best_reached(rows)
    assert meets["configuration"] == "zoo:ccs-tiny" and better["configuration"] == "rich-full"
    text = regime.reached_text(rows)
    assert "Of the 2 models trained at full length, 1 meets the concept targets" in text
    assert "3.1 % of its heads at true CCS 5 and 0.0 % at CCS \u2264 1 (1 and 0 of 32; 0 % of the way" in text
    assert "of those that miss them, one ranks higher by the same measure: **rich-full**" in text
    assert text.endswith("No model trained at full length reaches either target.")
    rows.append(full("deep", 0.15625, 0.0625))  # meets the concept targets and the CCS-5 target
    meets, better = regime.best_reached(rows)
    assert meets["configuration"] == "deep-full" and better is None  # deep-full scores 0.78, rich-full 0.42
    assert text != (text := regime.reached_text(rows)) and "ranks higher" not in text
    assert "At full length, the CCS-5 target is reached by deep-full. " in text
    # 5 of 32 and 1 of 32 heads: Wilson intervals 6.9-31.8 % and 0.6-15.7 % overlap
    assert "deep-full's 5 of 32 at CCS 5 has the 95 % Wilson interval 6.9-31.8 %, which holds the 15 % target" in text
    assert text.endswith("share the range 6.9-15.7 %, so their CCS-5 shares do not tell these recipes apart.")
    rows.append(full("grey", 0.0625, 0.09375, dict(GOOD, scene=0.943)))
    assert "the CCS-5 target is reached by deep-full and the CCS \u2264 1 target is reached by grey-full." in (
        regime.reached_text(rows)
    )
    apart = [full("a", 0.0, 0.0), full("b", 0.75, 0.0)]  # 0 and 24 of 32: intervals 0-10.7 % and 57.9-86.7 %
    assert "do not all overlap" in regime.chance_text(apart, apart[1])
    assert regime.chance_text(apart[:1], apart[0]) == ""  # one model: nothing to tell apart
    assert regime.reached_text([_row("rich", 0.2, 0.1)]) == ""  # no full-length model yet


def test_the_page_opens_with_what_the_rule_settled_and_the_best_model_reached():
    def counted(r):
        return dict(r, heads=32, high=round(32 * r["high_share"]), low=round(32 * r["low_share"]))

    short = [_row("rich", 0.2, 0.0), _row("deep", 0.1, 0.0, "ccs-tiny-l8"), _row("captions", 0.05, 0.0)]
    zoo = counted(_row("zoo:ccs-tiny", 0.03125, 0.0))
    text = regime.summary_text([*short, zoo])
    assert text.startswith("**In short.** The rule has settled 0 of the 3 configurations in its rank")
    assert "none qualifies so far, and **rich** is the next to train at full length" in text
    assert "has 1 of its 32 heads at true CCS 5 (zoo:ccs-tiny, 3.1 % against the paper's 15 %) and 0 at CCS" in text
    weak = dict(GOOD, shape=0.5)
    rich = counted(_row("rich", 0.25, 0.0, full=True, accuracy=weak))
    deep = counted(_row("deep", 0.125, 0.0625, "ccs-tiny-l8", full=True))
    text = regime.summary_text([*short, zoo, rich, deep])
    assert "settled 2 of the 3 configurations" in text and "it chose **deep**." in text
    assert "has 4 of its 32 heads at true CCS 5 (deep-full, 12.5 %" in text  # rich-full misses the targets
    last = counted(_row("captions", 0.0, 0.0, full=True))
    text = regime.summary_text([*short[::2], zoo, rich, last])  # rich and captions, both at full length
    assert "settled 2 of the 2 configurations" in text and "none qualifies: the rule chooses nothing." in text
    assert text.endswith("By the fallback, the book stays on the zoo (zoo:ccs-tiny is not told apart from the default recipe).")
    rule = regime.rule_text([*short[::2], zoo, rich, last])
    assert "Every configuration in its rank is settled and none qualifies: the rule chooses nothing. By the fallback" in rule
    assert regime.rule_text([*short, zoo, rich]).endswith("The rule has not chosen a recipe yet.")  # deep waits


def test_if_the_rule_chooses_nothing_the_book_moves_only_to_a_model_told_apart_from_the_default_recipe():
    """The fallback (regime.yaml): once every configuration in rank is settled and none qualifies, the
    best full-length model that meets the concept targets replaces the zoo only if its CCS-5 share beats
    the default recipe's seeds pooled by Fisher's exact test; nothing is decided while the rule waits."""

    def counted(r, heads=32):
        return dict(r, heads=heads, high=round(heads * r["high_share"]), low=round(heads * r["low_share"]))

    seeds = [counted(_row(f"zoo:ccs-tiny{s}", 1 / 32, 0.0)) for s in ("", "-s1", "-s2")]  # 3 of 96
    short = [_row("rich", 0.2, 0.0), _row("captions", 0.05, 0.0)]
    rich = counted(_row("rich", 0.25, 0.0, full=True, accuracy=dict(GOOD, shape=0.5)))  # misses the targets
    waiting = [*short, *seeds, counted(_row("zoo:ccs-tiny-h4", 1 / 16, 1 / 16), 16), rich]
    assert regime.fallback(waiting) == (None, None, None)  # captions is not trained at full length yet
    captions = counted(_row("captions", 1 / 32, 0.0, full=True))
    settled = [*waiting, captions]
    moves, best, p = regime.fallback(settled)
    assert moves is None and best["configuration"] == "zoo:ccs-tiny-h4" and 0.3 < p < 0.7  # 1 of 16 against 3 of 96
    text = regime.rule_text(settled)
    assert "the rule chooses nothing. By the fallback, the book stays on the zoo: zoo:ccs-tiny-h4" in text
    assert "has 1 of its 16 heads at true CCS 5 against 3 of 96 for the default recipe's 3 seeds" in text
    strong = [*short, *seeds, counted(_row("zoo:ccs-tiny-h4", 6 / 16, 1 / 16), 16), rich, captions]
    moves, best, p = regime.fallback(strong)  # no study run beats h4's share, so the rule chose nothing
    assert regime.select(strong)[0] is None and moves["configuration"] == "zoo:ccs-tiny-h4" and p < 0.001
    assert "By the fallback, the book moves to **zoo:ccs-tiny-h4**" in regime.rule_text(strong)
    assert regime.summary_text(strong).endswith("By the fallback, the book moves to **zoo:ccs-tiny-h4**.")
    assert "fallback" not in regime.summary_text(waiting)  # the rule still waits


def test_the_page_says_whether_a_short_run_keeps_its_place_on_another_seed():
    grey, rich, base = _row("grey", 0.031, 0.062), _row("rich", 0.125, 0.0), _row("base", 0.0, 0.0)
    rows = [grey, rich, base]
    assert [regime.place(rows, r) for r in rows] == [1, 2, 3]
    assert regime.seed_text(rows) == ""  # no run from another seed
    grey1 = dict(_row("grey", 0.031, 0.0), configuration="grey-s1", seed=1)  # no CCS <= 1 head on seed 1
    rows.append(grey1)
    assert regime.other_seeds(rows) == [(grey, grey1)]
    assert regime.place(rows, grey, grey1) == 2  # rich's larger CCS-5 share now breaks the tie of two zeros
    assert [r["configuration"] for r in regime.rank(rows)] == ["grey", "rich", "base"]  # the seed-1 run is not ranked
    text = regime.seed_text(rows)
    assert "grey-s1 (seed 1): 3.1 % CCS 5 and 0.0 % CCS \u2264 1 (score 0.00), against 3.1 % CCS 5 and 6.2 %" in text
    assert "in its place, grey would rank 2 instead of 1" in text and "Another seed moves grey in the rank" in text
    rich1 = dict(_row("rich", 0.094, 0.0), configuration="rich-s1", seed=1)
    del rich["seed"]  # the study's first short runs did not record it: the study's seed
    steady = regime.seed_text([grey, rich, base, rich1])
    assert "against 12.5 % CCS 5 and 0.0 % CCS \u2264 1 (score 0.00) from seed 0" in steady
    assert "rich would rank 2 as it does" in steady and steady.endswith(
        "leaves these configurations where they were in the rank."
    )


def _lines(**counts):
    """Lines of the base world's pool: `counts[concept]` of each concept."""
    by = {}
    for text, concept in regime.text_concepts("base").items():
        by.setdefault(concept, []).append(text)
    return [t for concept, k in counts.items() for t in by[concept][:k]]


def _heads(world, *heads, name="rich", full=False, high=0.1, specialised=0.5):
    """A measured row whose per-head table is `heads`: (top attribute, share, true CCS[, texts]) each."""
    return dict(
        _row(name, high, 0.0, full=full),
        world=world,
        specialised_share=specialised,
        heads=len(heads),
        pairs=3_000_000 if full else 384_000,
        per_head=[{"top": h[0], "share": h[1], "true_ccs": h[2], "texts": h[3] if len(h) > 3 else []} for h in heads],
    )


def test_heads_are_grouped_by_what_they_encode_and_how_many_values_it_has():
    rows = [
        _heads(
            "base",
            ("count", 0.9, 4, _lines(count=1, shape=4)),  # its true CCS is not what the test reads here
            ("count", 0.7, 2, _lines(count=2, shape=2, size=1)),
            ("count", 0.8, 3, _lines(count=3, size=2)),
            ("scene", 0.8, 5, _lines(scene=5)),
            ("scene", 0.3, 5),
            name="base",
        ),
        _heads("rich", ("scene", 0.9, 5), ("scene", 0.9, 3), ("shape", 0.6, 5)),
    ]
    t = regime.by_attribute(rows).set_index(["attribute", "world"])
    assert t.loc[("count", "base"), "values"] == 3 and t.loc[("count", "base"), "heads"] == 3
    assert t.loc[("count", "base"), "highest"] == 4 and t.loc[("count", "base"), "mean"] == pytest.approx(3.0)
    assert t.loc[("scene", "base"), "heads"] == 1  # the head at share 0.3 is not specialised
    assert t.loc[("scene", "rich"), "values"] == 16 and t.loc[("scene", "rich"), "ccs5"] == pytest.approx(50.0)
    assert t.loc[("shape", "rich"), "values"] == 16 and t.loc[("shape", "rich"), "heads"] == 1  # 0.6: specialised
    assert regime.n_values("shape", "base") == 8 and regime.n_values("size", "rich") == 2
    count = t.loc[("count", "base")]
    assert count["own"] == pytest.approx(40.0) and count["other"] == "shape" and count["other_share"] == pytest.approx(40.0)
    assert t.loc[("scene", "base"), "own"] == 100 and t.loc[("scene", "base"), "other"] == ""
    text = regime.attribute_text(rows)
    assert "The 3 heads that encode an attribute of 2 or 3 values (count) reach true CCS 4 at most, as expected" in text
    assert "They are 3 of the 8 analysed heads (37.5 %): were every one of them at CCS 5" in text
    assert (
        "Count heads, the most common (3), take 40 % of their texts from count, and most of the rest from shape lines (40 %)."
        in text
    )
    rows[0]["per_head"][1]["true_ccs"] = 5  # a count head at CCS 5: the suspect is not borne out
    assert "reach true CCS 5 at most." in regime.attribute_text(rows)


def test_colour_heads_scene_lines_are_compared_between_a_recipe_and_its_grey_twin():
    coloured = _heads("base", ("colour", 0.9, 3, _lines(colour=3, scene=2)), name="base")
    grey = _heads("grey", ("colour", 0.9, 5, _lines(colour=4, scene=1)), name="grey")
    other = _heads("base", ("colour", 0.9, 1, _lines(scene=5)), name="deep")  # another recipe: not a twin
    for r, config in ((coloured, "ccs-tiny"), (grey, "ccs-tiny"), (other, "ccs-tiny-l8")):
        r["config"] = config
    assert regime.text_share([coloured], "colour", "scene") == pytest.approx(40.0)
    text = regime.attribute_text([coloured, grey, other])
    assert "take 40 % of their texts from scene lines in the coloured worlds (base) and 20 % in the worlds" in text
    assert "most of the pull remains without them" in text  # half of it is not most
    grey["per_head"][0]["texts"] = _lines(colour=5)
    assert "the scenes' colours account for most of the pull" in regime.attribute_text([coloured, grey, other])
    assert "Do the scenes' own colours" not in regime.attribute_text([coloured, other])  # no grey run: no claim


def test_short_and_full_runs_are_paired_and_compared_as_measured():
    short, full = _heads("rich", high=0.125, specialised=0.7), _heads("rich", full=True, high=0.03, specialised=0.4)
    assert regime.short_and_full([short, full, _heads("rich", name="zoo:x")]) == [(short, full)]
    assert "ends with fewer CCS-5 heads and fewer specialised heads" in regime.attribute_text([short, full])
    full["specialised_share"] = 0.8
    text = regime.attribute_text([short, full])
    assert "12.5 % CCS-5 heads and 70 % specialised after 384,000 pairs, 3.0 % and 80 % after 3,000,000" in text
    assert "ends with fewer" not in text


def test_the_committed_study_page_is_the_generated_one():
    from pathlib import Path

    book = Path(__file__).resolve().parents[1] / "book"
    rows = regime.results(book / "regime")
    assert rows, "no measured configuration"
    assert (book / "regime.md").read_text() == regime.page_text(rows), "run `ccs regime page`"


def test_the_walk_trains_nothing_once_the_rule_has_chosen(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ccs.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["regime", "walk", "--threads", "1"])  # nothing measured: nothing to walk
    assert result.exit_code == 0 and "the rule has not chosen a recipe: no short run is measured" in result.output
    rows = [_row("rich", 0.2, 0.0), _row("rich", 0.2, 0.0, full=True), _row("deep", 0.1, 0.0, "ccs-tiny-l8")]
    rows.append(dict(_row("zoo:ccs-tiny", 0.031, 0.0), recipe=None))
    (tmp_path / "book" / "regime").mkdir(parents=True)
    for r in rows:
        (tmp_path / "book" / "regime" / f"{r['configuration'].replace(':', '-')}.json").write_text(json.dumps(r))
    assert regime.next_full(regime.results()) is None  # rich qualifies: deep is not needed
    result = CliRunner().invoke(app, ["regime", "walk"])
    assert result.exit_code == 0 and result.output.strip() == "the rule chooses rich"
    assert not (tmp_path / "train-runs").exists()
    rows[1]["accuracy"] = {"1": dict(GOOD, shape=0.5)}  # rich at full length misses the targets: deep is next
    (tmp_path / "book" / "regime" / "rich-full.json").write_text(json.dumps(rows[1]))
    assert regime.next_full(regime.results())["configuration"] == "deep"
