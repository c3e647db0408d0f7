"""The offline labeler and judge: the vocabulary, unambiguous heads, the odd one out, heads that share
no concept, the stored calibration and a floor on its held-out accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from ccs import llm, scores
from ccs.llm import concepts, model_fit


@pytest.fixture(scope="module")
def backend():
    return llm.backend("embedding")  # loads MiniLM once for the module (or nothing, when cached)


def test_vocabulary_is_curated():
    v = llm.vocabulary()
    assert 55 <= len(v) <= 70
    assert all(c.description and c.synonyms for c in v.values())
    owner = {}
    for c in v.values():  # each synonym names one concept only
        for w in (c.name, *c.synonyms):
            assert owner.setdefault(concepts._word(w), c.name) == c.name, w
    assert {llm.group(c) for c in v} >= {"locations", "objects", "animals", "colors"}


def test_vocabulary_covers_the_concept_world():
    world = pytest.importorskip("ccs.world")
    assert set(world.VOCAB) <= set(llm.vocabulary())


def test_normalise():
    assert llm.normalise("Colors.") == "colour"
    assert llm.normalise("Geolocation") == "location"
    assert llm.normalise("ANIMALS") == "animal"
    assert llm.normalise("unknown") == llm.UNKNOWN
    assert llm.normalise("banana") is None
    assert llm.same("birds", "animal") and llm.same("Animals", "bird") and llm.same("person", "people")
    assert not llm.same("bird", "insect") and not llm.same("colour", "shape")


def test_unambiguous_heads(backend):
    colours = [
        "Vibrant shades of teal",
        "A bright orange hue",
        "Image with a red color",
        "Pastel pink tones",
        "A deep purple color",
    ]
    places = [
        "Photo taken in Paris",
        "Picture captured in Kenya",
        "Image shot in Tokyo",
        "Photograph taken in Peru",
        "Snapshot from Norway",
    ]
    assert backend.label(colours) == "colour"
    assert backend.label(places) == "location"
    assert all(backend.judge(t, "colour") for t in colours)
    assert all(backend.judge(t, "location") for t in places)


def test_judge_rejects_the_odd_one_out(backend):
    head = [
        "Photo taken in Paris",
        "Picture captured in Kenya",
        "A plate of spaghetti",
        "Image shot in Tokyo",
        "Photograph taken in Peru",
    ]
    r = scores.score_head(head, backend)
    assert r["label"] == "location" and r["judgements"] == [1, 1, 0, 1, 1] and r["ccs"] == 4


def test_incoherent_head_gets_a_label_and_scores_low(backend):
    """As the paper's LLM, the labeler always names a concept; the judge then rejects the texts."""
    head = ["A grandmother knitting", "A rusty anchor", "Misty pine forest", "A violin on a table", "Graffiti on a train"]
    r = scores.score_head(head, backend)
    assert r["label"] in llm.vocabulary() and not r["flagged"] and r["ccs"] <= 1
    colours = [
        "Vibrant shades of teal",
        "A bright orange hue",
        "Image with a red color",
        "Pastel pink tones",
        "A deep purple color",
    ]
    assert backend.confidence(colours) > r["confidence"]  # a clear head fits its label better


def test_deterministic_and_cached(backend):
    e = llm.embed(["a red circle", "a red circle", "a blue square"])
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5) and np.array_equal(e[0], e[1])
    head = ["a photo of a red object.", "something blue.", "a green thing.", "a pink shape.", "a cyan circle"]
    assert backend.label(head) == backend.label(list(head)) == "colour"
    assert backend.judge("Vibrant magenta", "colours") == backend.judge("Vibrant magenta", "colour")


def test_free_labels_can_be_judged(backend):
    assert backend.judge("A photo of a dog", "dogs and puppies") == 1
    assert backend.judge("Photo taken in Paris", "dogs and puppies") == 0


def test_labelled_sets_are_sound_and_apart():
    dev, held = llm.load_heads("dev"), llm.load_heads("heldout")
    assert len(held) >= 40 and len(dev) >= 30
    for h in dev + held:
        assert len(h["texts"]) == 5 and set(h["truth"]) <= {0, 1}
        assert h["concept"] == llm.UNKNOWN or h["concept"] in llm.vocabulary()
        assert (h["concept"] == llm.UNKNOWN) == (sum(h["truth"]) == 0)
    assert not {t for h in dev for t in h["texts"]} & {t for h in held for t in h["texts"]}


def test_stored_calibrations_are_reproducible(backend):
    """Every stored calibration is what its recipe fits on its hand-written heads (none is edited by hand)."""
    assert llm.calibrations() == llm.fit_calibrations()
    assert set(llm.calibrations()) == set(llm.CALIBRATIONS)


def test_world_calibration_never_sees_the_pool():
    """The world calibration plays the part of in-context examples: its heads and example lines are
    hand-written, none is a line of the world pool (which a scored head's texts come from)."""
    from ccs import pools

    pool = {t.lower() for t in pools.load("world").texts}
    world_dev = {t.lower() for h in llm.load_heads("world_dev") for t in h["texts"]}
    examples = {t.lower() for lines in llm.concept_examples().values() for t in lines}
    assert len(llm.load_heads("world_dev")) >= 20
    assert not world_dev & pool and not examples & pool and not examples & world_dev


def _simulated_heads(seed: int, n: int = 24) -> list[dict]:
    """Heads of world pool lines: 3 to 5 lines of one concept, the rest of others (as TextSpan records)."""
    from ccs import pools

    pool, rng = pools.load("world"), np.random.default_rng(seed)
    by: dict[str, list[str]] = {}
    for t, c in zip(pool.texts, pool.concepts):
        by.setdefault(c, []).append(t)
    heads = []
    for i in range(n):
        c, k = list(by)[i % 7], 3 + i % 3
        others = [str(o) for o in rng.choice([o for o in by if o != c], 5 - k)]
        texts = [str(t) for t in rng.choice(by[c], k, replace=False)] + [str(rng.choice(by[o])) for o in others]
        heads.append({"layer": 0, "head": i, "texts": texts, "concepts": [c] * k + others})
    return heads


def test_a_model_calibration_is_fitted_without_the_model_s_own_heads():
    records = {m: _simulated_heads(i) for i, m in enumerate(("a", "b", "c"))}
    fitted = llm.fit_model_calibrations(records, strengths=(1e-3,))
    assert {m: c["fitted_on"] for m, c in fitted.items()} == {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]}
    # other heads for "a": the others' calibrations move; a's own enters a's only as the lines it holds out
    refit = llm.fit_model_calibrations(records | {"a": _simulated_heads(7)}, strengths=(1e-3,))
    assert refit["b"] != fitted["b"]
    assert refit["a"]["held_out_lines"] == len({t for h in _simulated_heads(7) for t in h["texts"]})
    # the offsets make the judge closer to the truth on a model it never saw
    fresh = _simulated_heads(11)
    judged = {}
    for name in ("world", "fitted"):
        b = llm.EmbeddingBackend(calibration="world")
        if name == "fitted":
            b.threshold, b.margin = fitted["a"]["threshold"], fitted["a"]["margin"]
            for c, o in fitted["a"]["offsets"].items():
                b._offset[b.concepts.index(c)] -= o
        judged[name] = scores.ground_truth(scores.score_heads(fresh, b))
    assert judged["fitted"]["label_accuracy"] >= judged["world"]["label_accuracy"]
    assert judged["fitted"]["judge_kappa"] > judged["world"]["judge_kappa"]


def test_pools_get_their_calibration():
    assert llm.calibration_for("world") == "world" and llm.calibration_for("textspan") == "real"
    assert llm.make("embedding", pool="world").settings()["calibration"] == "world"
    for m in llm.model_calibrations():  # a trained model of the book: its own, fitted without it
        b = llm.make("embedding", pool="world", scored=m)
        assert b.settings()["calibration"] == f"world:{m}" and m not in b.fitted_on and b.offsets
        assert llm.make("embedding", pool="textspan", scored=m).settings()["calibration"] == "real"
    assert llm.make("embedding", pool="world", scored="not-a-model").settings()["calibration"] == "world"
    assert llm.make("embedding", pool="world", calibration="lenient").settings()["margin"] is None
    with pytest.raises(ValueError, match="calibration"):
        llm.make("embedding", calibration="strict")


def test_heldout_accuracy_floor(backend):
    """Guards the figures reported in the book against regressions (see benchmarks/llm_embedding.py):
    the real pools' calibration is no worse on the held-out heads than the lenient judge was
    (label 0.838, kappa 0.750, CCS MAE 0.698, Spearman 0.844, half the concept-less heads low)."""
    r = scores.evaluate(backend, llm.load_heads("heldout"))
    assert r["label_accuracy"] >= 0.86 and r["judge_kappa"] >= 0.745 and r["ccs_mae"] <= 0.66
    assert r["ccs_spearman"] >= 0.85 and r["incoherent_low"] >= 0.5 and r["flagged"] == 0
    lenient = scores.evaluate(llm.make("embedding", calibration="lenient"), llm.load_heads("heldout"))
    for k in ("label_accuracy", "judge_kappa", "ccs_spearman", "incoherent_low"):
        assert r[k] >= lenient[k], k
    assert r["ccs_mae"] <= lenient["ccs_mae"]


def test_cli_heads_prints_records(backend, tmp_path):
    import json

    from typer.testing import CliRunner

    from ccs.cli import app

    head = [
        "Photo taken in Paris",
        "Picture captured in Kenya",
        "A plate of spaghetti",
        "Image shot in Tokyo",
        "Photograph taken in Peru",
    ]
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"layer": 11, "head": 5, "texts": head}]))
    # lines of a real CLIP head: the calibration for real lines (the default is the pool's, here the world's)
    out = CliRunner().invoke(app, ["heads", "--records", str(path), "--json", "--calibration", "real"])
    assert out.exit_code == 0, out.output
    (r,) = json.loads(out.stdout)
    assert (r["name"], r["label"], r["ccs"], r["judgements"]) == ("L11.H5", "location", 4, [1, 1, 0, 1, 1])
    text = CliRunner().invoke(app, ["heads", "--records", str(path), "--calibration", "real"]).stdout
    assert "L11.H5" in text and "✗ A plate of spaghetti" in text
    # the pages' judge: the calibration for the pool and the scored model, unless named
    from ccs import llm, scores

    for calibration in ("pool", "lenient"):
        out = CliRunner().invoke(app, ["heads", "--records", str(path), "--json", "--calibration", calibration])
        page = scores.score_heads(
            [{"layer": 11, "head": 5, "texts": head}],
            llm.make("embedding", pool="world", calibration=calibration, scored="ccs-tiny"),
        )
        assert json.loads(out.stdout)[0]["judgements"] == list(page["judgements"].iloc[0])
    bad = CliRunner().invoke(app, ["heads", "--records", str(path), "--calibration", "strict"])
    assert bad.exit_code == 2 and "calibration must be 'pool' or one of" in " ".join(bad.output.split())


def test_a_model_calibration_never_sees_a_line_of_the_scored_model(monkeypatch):
    records = {m: _simulated_heads(i) for i, m in enumerate(("a", "b"))}
    shared = records["a"][0]["texts"][0]  # a line of a's heads that b's heads also hold
    records["b"][0] = {**records["b"][0], "texts": [shared, *records["b"][0]["texts"][1:]]}
    calls: list[list[str]] = []
    fit = model_fit._fit_world_model

    def spy(heads, strength):
        calls.append([t for h in heads for t in h["texts"]])
        return fit(heads, strength)

    monkeypatch.setattr(model_fit, "_fit_world_model", spy)  # where fit_model_calibrations looks it up
    fitted = llm.fit_model_calibrations(records, strengths=(1e-3,))
    a_lines = {t for h in records["a"] for t in h["texts"]}
    assert len(calls) == 2 and calls[0] and not a_lines & set(calls[0])  # a's fit, on b's heads without a's lines
    assert shared in {t for h in records["b"] for t in h["texts"]} and shared not in calls[1]
    assert fitted["a"]["held_out_lines"] == len(a_lines) and fitted["a"]["fitted_on"] == ["b"]
    kept = llm.without_lines(records["b"], a_lines)
    assert all(shared not in h["texts"] for h in kept) and len(kept) == len(records["b"])
    assert all(len(h["texts"]) == len(h["concepts"]) for h in kept)
    assert llm.without_lines([{"texts": ["x", "y"], "concepts": ["c", "c"]}], {"x"}) == []  # too few texts left


def test_the_judge_on_lines_no_head_picked_and_on_lines_about_nothing_in_the_world():
    from ccs import pools

    pool = pools.world()
    b = llm.make("embedding", pool="world", calibration="world")
    picked = set(pool.texts[::3])
    r = llm.line_checks(b, pool, picked)
    assert r["unpicked_lines"] == sum(w for t, w in zip(pool.texts, pool.in_world) if t not in picked)
    assert r["distractor_lines"] == sum(not w for t, w in zip(pool.texts, pool.in_world) if t not in picked) > 0
    assert 0.5 < r["unpicked_own_concept"] <= 1 and 0.5 < r["unpicked_other_concept"] <= 1
    assert 0 <= r["distractors_rejected"] <= 1
