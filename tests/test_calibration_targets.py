"""The offline judge, calibrated for the concept world, against the world's ground truth on every
trained model of the book (its CCS page's record), and on the held-out real-CLIP-style heads."""
import json

import pytest

from ccs import models, pipeline

TARGETS = {"label_accuracy": 0.85, "judge_kappa": 0.85, "ccs_spearman": 0.85}
TRAINED = [m for m in pipeline.grid()["models"] if models.spec(m).embedded]


@pytest.mark.parametrize("model", TRAINED)
def test_calibrated_judge_meets_its_targets(model):
    rec = json.loads((pipeline.ROOT / "book" / "runs" / model / "ccs.json").read_text())
    assert rec["labeler"]["calibration"] == "world", "the world pool is judged with its own calibration"
    truth = rec["ground_truth"]
    for k, floor in TARGETS.items():
        assert truth[k] >= floor, f"{model}: {k} {truth[k]:.3f} < {floor}"
    lenient = rec["ground_truth_lenient"]  # the calibration is what lifts it
    assert truth["judge_kappa"] > lenient["judge_kappa"]


@pytest.mark.parametrize("model", TRAINED)
def test_real_heads_no_worse_than_the_lenient_judge(model):
    rec = json.loads((pipeline.ROOT / "book" / "runs" / model / "ccs.json").read_text())["heldout_real"]
    for k in ("label_accuracy", "judge_kappa", "ccs_spearman", "incoherent_low"):
        assert rec["real"][k] >= rec["lenient"][k], k
    assert rec["real"]["ccs_mae"] <= rec["lenient"]["ccs_mae"]
