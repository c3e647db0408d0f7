"""Zero-shot classification and retrieval metrics (model-agnostic; an untrained tiny CLIP stands in)."""
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
