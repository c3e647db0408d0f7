"""The pruning experiment engine: per-image results, groups of seeds, paired comparisons, verdicts,
concept matrices and the diagonal test on hand-made results; one real run on a small model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccs import ablate, concept_pruning, evaluate, models, pruning, verdicts, world


def fake(values: dict) -> pruning.Results:
    """Results from {(condition, task): per-image p_true list} on one set 'test' (correct = p > 0.5)."""
    r = pruning.Results()
    for (c, t), v in values.items():
        v = np.asarray(v, float)
        r.scores[c, "test", t] = {"p_true": v, "correct": (v > 0.5).astype(float)}
    return r


def test_groups_drops_and_comparisons():
    r = fake(
        {
            ("original", "a"): [1, 1, 1, 1],
            ("original", "b"): [1, 1, np.nan, 1],
            ("high", "a"): [0, 0, 1, 1],
            ("high", "b"): [1, 0, np.nan, 1],
            ("random/0", "a"): [1, 1, 1, 0],
            ("random/0", "b"): [1, 1, np.nan, 1],
            ("random/1", "a"): [1, 0, 1, 1],
            ("random/1", "b"): [1, 1, np.nan, 1],
        }
    )
    assert r.members("random") == ["random/0", "random/1"] and r.members("high") == ["high"]
    with pytest.raises(KeyError, match="no condition"):
        r.members("low")
    # per image: mean over the tasks that apply (image 2 has task a only), then over the seeds
    assert r.per_image("high", "test").tolist() == [0.5, 0.0, 1.0, 1.0]
    assert r.per_image("random", "test").tolist() == [1.0, 0.75, 1.0, 0.75]
    assert r.value("high", "test", tasks=["a"]) == 0.5
    d = r.drop("high", "test")
    assert d[0] == pytest.approx(1 - 0.625) and d[1] <= d[0] <= d[2]
    assert r.compare("random", "high", "test")[0] == pytest.approx(0.875 - 0.625)
    assert r.seeds("random", "test")["std"] == pytest.approx(0.0)  # both seeds average 0.875
    table = pruning.drop_table(r, ["original", "high", "random"], "test")
    row = table[(table.condition == "high") & (table.task == "a")].iloc[0]
    assert row["top-1 %"] == 50 and row["top-1 drop"] == 50 and "p(true) seed sd" in table


def test_verdict_from_intervals():
    assert verdicts.verdict([(3, 1, 5), (2, 0.5, 4)]) == "supported"
    assert verdicts.verdict([(3, 1, 5), (0.5, -0.5, 1.5)]) == "inconclusive"
    # an interval wholly on the other side of zero shows the opposite: contradicted, not a shrug
    assert verdicts.verdict([(3, 1, 5), (-2, -3, -1)]) == "contradicted"
    assert verdicts.verdict([(-2, -3, -1)]) == "contradicted"
    assert verdicts.verdict([(0, 0, 0)]) == "inconclusive"  # touching zero is not beyond it
    assert verdicts.verdict([(-1, -2, 0.0)]) == "inconclusive"
    assert verdicts.verdict([]) == verdicts.NO_VERDICT
    assert set(verdicts.VERDICTS) == {"supported", "contradicted", "inconclusive"}
    assert verdicts.interval_text((0.041, 0.029, 0.053)) == "4.1 pp [2.9, 5.3]"
    assert verdicts.interval_text((0.314, -0.02, 0.55), 1, "", digits=2) == "0.31 [-0.02, 0.55]"


def test_task_for_concepts():
    tasks = list(world.tasks())
    assert concept_pruning.task_for("colors", tasks) == "colour" and concept_pruning.task_for("Position", tasks) == "position"
    assert concept_pruning.task_for("location", tasks) == "scene"  # the paper's locations are the world's scenes
    assert concept_pruning.task_for("animal", tasks) is None


def test_concept_matrix_and_diagonal():
    ones = [1.0] * 4
    r = fake(
        {
            ("original", "colour"): ones,
            ("original", "shape"): ones,
            ("colour", "colour"): [0.2] * 4,
            ("colour", "shape"): [0.9] * 4,
            ("colour-random/0", "colour"): [0.9] * 4,
            ("colour-random/0", "shape"): [0.9] * 4,
            ("shape", "colour"): ones,
            ("shape", "shape"): [0.5] * 4,
            ("shape-random/0", "colour"): ones,
            ("shape-random/0", "shape"): [0.7] * 4,
        }
    )
    m = concept_pruning.concept_matrix(r, ["colour", "shape"])
    assert m["change"].loc["colour", "colour"] == pytest.approx(-80)
    assert m["excess"].loc["colour", "colour"] == pytest.approx(-70)
    assert m["excess"].loc["shape", "shape"] == pytest.approx(-20)
    d = concept_pruning.diagonal_test(r, ["colour", "shape"])
    # excess costs: diagonal (0.7 + 0.2) / 2, off-diagonal (0 + 0) / 2
    assert d["diagonal"] == pytest.approx(0.45) and d["off_diagonal"] == pytest.approx(0.0)
    assert d["difference"] == pytest.approx((0.45, 0.45, 0.45))
    # the paper's concept tables: on a concept's task, its heads' excess cost minus another concept's
    assert concept_pruning.cross_test(r, "colour", "shape") == pytest.approx((0.7, 0.7, 0.7))  # 0.9 - 0.2 against 1 - 1
    assert concept_pruning.cross_test(r, "shape", "colour") == pytest.approx((0.2, 0.2, 0.2))  # 0.7 - 0.5 against 0.9 - 0.9
    assert all(np.isnan(concept_pruning.cross_test(r, "colour", "scene")))  # no scene heads: nothing to compare
    assert all(np.isnan(concept_pruning.cross_test(r, "colour", "shape", prefix="truth: ")))


def test_importance_rho_ranks_heads_by_ccs_against_the_cost_of_pruning_each_alone():
    import pandas as pd

    base = [1.0, 0.8, 0.6, 0.9]
    cost = dict(zip("abcdefghij", [0.05, 0.1, 0.08, 0.2, 0.3, 0.25, 0.4, 0.45, 0.35, 0.5]))  # each head's drop
    r = fake({("original", "t"): base, **{(f"head/{h}", "t"): [v - c for v in base] for h, c in cost.items()}})
    rising = pd.Series([1, 1, 2, 2, 3, 3, 4, 4, 5, 5], index=list(cost), dtype=float)
    rho, lo, hi = pruning.importance_rho(r, rising)
    assert rho > 0.8 and 0 < lo <= rho <= hi  # higher CCS, costlier heads
    assert pruning.importance_rho(r, -rising)[0] == pytest.approx(-rho)
    with pytest.raises(KeyError, match="head/z"):
        pruning.importance_rho(r, pd.Series([1.0], index=["z"]))


def test_a_real_run_matches_plain_embeddings_and_prunes(one_thread, tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    from ccs import cache

    cache.memory.cache_clear()
    torch.manual_seed(0)
    model, _, tok = models.load("ccs-tiny", untrained=True)
    sets = pruning.world_sets(24, 0, ("test", "sketch"))
    assert "texture" not in sets["sketch"].labels and "texture" in sets["test"].labels
    clfs = pruning.classifiers("ccs-tiny", model, tok, world.tasks())
    conds = {"original": [], "high": ["L5.H0", "L5.H1"]}
    r = pruning.run(model, "ccs-tiny", sets, clfs, conds, only={"high": ["test"]}, progress=False)
    assert ("high", "sketch", "shape") not in r.scores and ("original", "sketch", "shape") in r.scores
    emb = evaluate.image_embeddings(model, sets["test"].images)
    task = world.tasks()["shape"]
    scale = float(model.logit_scale.detach().exp())
    plain = evaluate.zero_shot_scores(emb, clfs["shape"], sets["test"].labels["shape"], scale)
    assert np.allclose(r.scores["original", "test", "shape"]["p_true"], plain["p_true"], atol=1e-6)
    with ablate.pruned(model, conds["high"]):
        pruned_emb = evaluate.image_embeddings(model, sets["test"].images)
    pruned = evaluate.zero_shot_scores(pruned_emb, clfs["shape"], task.labels(world.sample(24, 0).attributes), scale)
    assert np.allclose(r.scores["high", "test", "shape"]["p_true"], pruned["p_true"], atol=1e-6)
    assert not np.allclose(pruned["p_true"], plain["p_true"])
    # a rerun is served from the cache by the pruned tower's weights, and gives the same numbers
    again = pruning.run(model, "ccs-tiny", sets, clfs, conds, only={"high": ["test"]}, progress=False)
    assert np.array_equal(again.scores["high", "test", "shape"]["p_true"], r.scores["high", "test", "shape"]["p_true"])
    assert list((tmp_path / "arrays").rglob("*.npz"))  # the checked cache (ccs.cache.checked)
    cache.memory.cache_clear()


def test_a_run_through_the_shared_stream_equals_one_of_full_forwards(one_thread, tmp_path, monkeypatch):
    """`run` computes each set's prunings from the unpruned stream, in the order of their first layer:
    the scores are those of full forwards, bit for bit, and come back in the order asked for."""
    torch.manual_seed(0)
    model, _, tok = models.load("ccs-tiny", untrained=True)
    sets = pruning.world_sets(20, 1, ("test", "noisy"))
    clfs = pruning.classifiers("ccs-tiny", model, tok, world.tasks())
    conds = {"original": [], "late": ["L5.H0", "L5.H1"], "early": ["L2.H3"], "mixed": ["L4.H2", "L1.H0"]}
    runs = {}
    for name, shared in (("stream", pruning.stream), ("full", lambda model, images: None)):
        monkeypatch.setenv("CCS_CACHE", str(tmp_path / name))  # each computes its own embeddings
        monkeypatch.setattr(pruning, "stream", shared)
        runs[name] = pruning.run(model, "ccs-tiny", sets, clfs, conds, progress=False)
    assert runs["stream"].conditions() == list(conds) == runs["full"].conditions()
    assert list(runs["stream"].scores) == list(runs["full"].scores)
    for key, s in runs["full"].scores.items():
        assert all(np.array_equal(s[m], runs["stream"].scores[key][m], equal_nan=True) for m in s), key
    assert pruning.by_first_layer(model, conds) == ["mixed", "early", "late", "original"]


def test_what_carries_a_verdict_is_said_in_words():
    import pandas as pd

    from ccs import carriers

    tasks = pd.DataFrame({"verdict": ["supported", "inconclusive", "supported"]}, index=["shape", "position", "size"])
    heads = pd.DataFrame({"verdict": ["contradicted", "supported"]}, index=["L5.H1", "L4.H0"])
    c = carriers.carried("supported", tasks, heads)
    assert (c["tasks"], c["heads"]) == (["position"], ["L5.H1"])
    assert c["text"] == "supported; without position it would be inconclusive, without L5.H1 it would be contradicted"
    same = carriers.carried("supported", tasks.assign(verdict="supported"), heads.assign(verdict="supported"))
    assert same["text"] == "supported; it holds without any one task and without any one high head"
