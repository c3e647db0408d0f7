"""Zero-shot classification and retrieval metrics (model-agnostic; an untrained tiny CLIP stands in)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccs import evaluate, models, world


@pytest.fixture(scope="module")
def tiny():
    return models.load("ccs-tiny", untrained=True)


def test_retrieval_recall_on_known_rankings():
    emb = F.normalize(torch.randn(20, 8), dim=-1)
    r = evaluate.retrieval_recall(emb, emb, ks=(1, 5))
    assert r == {"image_to_text_R@1": 1.0, "image_to_text_R@5": 1.0,
                 "text_to_image_R@1": 1.0, "text_to_image_R@5": 1.0}
    # texts shifted by one: no image finds its own text first
    eye = torch.eye(4)
    r = evaluate.retrieval_recall(eye, eye.roll(1, 0), ks=(1, 4))
    assert r["image_to_text_R@1"] == 0.0 and r["image_to_text_R@4"] == 1.0
    assert r["text_to_image_R@1"] == 0.0


def test_accuracy_skips_unlabelled_rows():
    clf = torch.eye(3)
    emb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    assert evaluate.accuracy(emb, clf, [0, 1, 0, -1]) == pytest.approx(2 / 3)


def test_classifier_and_embeddings_are_normalised(tiny):
    model, _, tok = tiny
    task = world.tasks()["colour"]
    clf = evaluate.zero_shot_classifier(model, tok, task.classnames, task.templates)
    assert clf.shape == (len(task.classnames), model.text_projection.shape[1])
    assert torch.allclose(clf.norm(dim=-1), torch.ones(len(clf)), atol=1e-5)
    # the ensemble is the renormalised mean of the normalised prompt embeddings
    one = evaluate.text_embeddings(model, tok, [t.format("red") for t in task.templates])
    assert torch.allclose(clf[0], F.normalize(one.mean(0), dim=-1), atol=1e-5)
    batch = world.sample(8, 0)
    emb = evaluate.image_embeddings(model, batch.images, batch_size=3)
    assert emb.shape == (8, clf.shape[1])
    assert torch.allclose(emb.norm(dim=-1), torch.ones(8), atol=1e-5)
    acc = evaluate.zero_shot_accuracy(model, tok, batch, task)
    assert 0.0 <= acc <= 1.0
    vid = evaluate.video_embeddings(model, world.clips(3, 0, frames=2).frames)
    assert vid.shape == (3, clf.shape[1])


def test_bootstrap_interval_brackets_the_mean():
    lo, hi = evaluate.bootstrap_ci([1, 0, 1, 1, 0, 1, 1, 1] * 10)
    assert lo < 0.75 < hi


def test_zero_shot_scores_hand_computed():
    clf = torch.eye(3)
    emb = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.4, 0.6], [0.5, 0.5, 0.0], [1.0, 0, 0]])
    s = evaluate.zero_shot_scores(emb, clf, [0, 1, 0, -1], logit_scale=10.0)
    assert list(s["correct"]) == [1.0, 0.0, 1.0]  # a tie goes to the first class (argmax)
    assert s["margin"] == pytest.approx([0.8, -0.2, 0.0])
    p = torch.softmax(10 * emb[:3], 1)
    assert s["p_true"] == pytest.approx([p[0, 0].item(), p[1, 1].item(), p[2, 0].item()], abs=1e-6)
    assert s["correct"].mean() == pytest.approx(evaluate.accuracy(emb, clf, [0, 1, 0, -1]))


def test_intervals_cover_the_true_value_on_simulated_data():
    """95 % intervals of an accuracy and of a paired difference cover the truth in about 95 % of
    simulated experiments (the paired one is also much narrower than an unpaired comparison)."""
    rng = np.random.default_rng(0)
    hits_mean = hits_diff = 0
    widths = []
    sims = 200
    for s in range(sims):
        easy = rng.random(400) < 0.6  # image difficulty shared by both conditions
        a = (easy | (rng.random(400) < 0.3)).astype(float)  # P(correct) = 0.72
        b = a * (rng.random(400) >= 0.1)  # pruning breaks 10 % of the correct answers: diff 0.072
        m, lo, hi = evaluate.mean_ci(a, n_resamples=500, seed=s)
        hits_mean += lo <= 0.72 <= hi
        d, lo, hi = evaluate.paired_ci(a, b, n_resamples=500, seed=s)
        hits_diff += lo <= 0.072 <= hi
        widths.append(hi - lo)
        assert d == pytest.approx(a.mean() - b.mean())
    assert 0.88 <= hits_mean / sims <= 0.99 and 0.88 <= hits_diff / sims <= 0.99
    assert np.mean(widths) < 0.07  # paired: about 0.05; an unpaired interval would be about 0.13 wide
    assert evaluate.paired_ci([1, 1, 0], [1, 1, 0]) == (0.0, 0.0, 0.0)  # no spread, no interval
    with pytest.raises(ValueError):
        evaluate.paired_ci([1, 0], [1, 0, 1])


def test_spread_across_seeds():
    assert evaluate.spread([0.5, 0.7, 0.6]) == pytest.approx({"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7})
