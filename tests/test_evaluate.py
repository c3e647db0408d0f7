"""Zero-shot classification and retrieval metrics (model-agnostic; an untrained tiny CLIP stands in)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccs import evaluate, intervals, models, world


@pytest.fixture(scope="module")
def tiny():
    return models.load("ccs-tiny", untrained=True)


def test_retrieval_recall_on_known_rankings():
    emb = F.normalize(torch.randn(20, 8), dim=-1)
    r = evaluate.retrieval_recall(emb, emb, ks=(1, 5))
    assert r == {"image_to_text_R@1": 1.0, "image_to_text_R@5": 1.0, "text_to_image_R@1": 1.0, "text_to_image_R@5": 1.0}
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
    frames = world.clips(3, 0, frames=2).frames
    vid = evaluate.video_embeddings(model, frames)  # the paper's protocol: the mean, not renormalised
    assert vid.shape == (3, clf.shape[1]) and (vid.norm(dim=-1) <= 1 + 1e-6).all()
    frame_emb = evaluate.image_embeddings(model, frames.flatten(0, 1)).view(3, 2, -1)
    assert torch.allclose(vid, frame_emb.mean(1), atol=1e-6)
    renormalised = evaluate.video_embeddings(model, frames, protocol="clip4clip")
    assert torch.allclose(renormalised, F.normalize(frame_emb.mean(1), dim=-1), atol=1e-6)
    with pytest.raises(ValueError, match="unknown video protocol"):
        evaluate.pool_frames(frame_emb, "CLIP4Clip")


@pytest.mark.parametrize("name", ["ccs-tiny", "ViT-B-32-OpenAI"])
def test_encoding_up_to_the_last_end_of_text_token_is_open_clip_s_encoding(name):
    """Prompts of different lengths in one batch (the longest sets the cut): the same embeddings as
    open_clip's full-context encode_text, with the trained tiny model and the paper's architecture; a
    tower that does not pool at the end-of-text token is run as it is."""
    torch.manual_seed(0)
    model, _, tok = models.load(name, untrained=name != "ccs-tiny")
    tokens = tok(["red", "a photo of a cat.", "three small striped triangles on the left of a beach scene"])
    assert int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]  # there is padding to cut
    with torch.no_grad():
        full, cut = model.encode_text(tokens), evaluate.encode_text(model, tokens)
        assert torch.allclose(cut, full, atol=2e-5) and not torch.allclose(full[0], full[1], atol=1e-3)
        model.text_pool_type = "last"  # the last position is padding: now the cut would change it
        assert torch.equal(evaluate.encode_text(model, tokens), model.encode_text(tokens))


def test_bootstrap_interval_brackets_the_mean():
    _, lo, hi = intervals.mean_ci([1, 0, 1, 1, 0, 1, 1, 1] * 10, n_resamples=1000)
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
        m, lo, hi = intervals.mean_ci(a, n_resamples=500, seed=s)
        hits_mean += lo <= 0.72 <= hi
        d, lo, hi = intervals.paired_ci(a, b, n_resamples=500, seed=s)
        hits_diff += lo <= 0.072 <= hi
        widths.append(hi - lo)
        assert d == pytest.approx(a.mean() - b.mean())
    assert 0.88 <= hits_mean / sims <= 0.99 and 0.88 <= hits_diff / sims <= 0.99
    assert np.mean(widths) < 0.07  # paired: about 0.05; an unpaired interval would be about 0.13 wide
    assert intervals.paired_ci([1, 1, 0], [1, 1, 0]) == (0.0, 0.0, 0.0)  # no spread, no interval
    with pytest.raises(ValueError):
        intervals.paired_ci([1, 0], [1, 0, 1])


def test_spread_across_seeds():
    assert intervals.spread([0.5, 0.7, 0.6]) == pytest.approx({"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7})


# --- retrieval ranks (ties count against the query), multi-caption retrieval, OOD metrics ---


def test_retrieval_ranks_hand_computed():
    sim = np.array(
        [
            [0.9, 0.5, 0.1, 0.3],  # correct {0}, highest -> 1
            [0.7, 0.7, 0.2, 0.1],  # correct {1}, tied with incorrect 0 -> 2 (tie counts against)
            [0.2, 0.6, 0.1, 0.9],  # correct {0, 3}: the best (3) counts -> 1 (not 3)
            [0.4, 0.5, 0.5, 0.3],  # correct {1, 2}, tied with each other only -> 1
            [0.1, 0.2, 0.3, 0.4],
        ]
    )  # correct {0}, lowest -> 4
    matches = np.zeros_like(sim, dtype=bool)
    for q, cs in enumerate([[0], [1], [0, 3], [1, 2], [0]]):
        matches[q, cs] = True
    ranks = evaluate.retrieval_ranks(sim, matches)
    assert ranks.tolist() == [1, 2, 1, 1, 4]
    # torch inputs (float32) give the same ranks
    assert evaluate.retrieval_ranks(torch.tensor(sim, dtype=torch.float32), torch.tensor(matches)).tolist() == [1, 2, 1, 1, 4]
    m = evaluate.retrieval_metrics(ranks, ks=(1, 2, 3))
    assert m == pytest.approx({"R@1": 3 / 5, "R@2": 4 / 5, "R@3": 4 / 5, "MdR": 1.0, "MnR": 9 / 5})
    m = evaluate.retrieval_metrics([1, 2, 3, 10])  # default ks; even count: median between 2 and 3
    assert m == pytest.approx({"R@1": 0.25, "R@5": 0.75, "R@10": 1.0, "MdR": 2.5, "MnR": 4.0})
    # a constant similarity matrix is the worst case, not the best
    assert evaluate.retrieval_ranks(np.ones((3, 3)), np.eye(3, dtype=bool)).tolist() == [3, 3, 3]
    matches[2] = False
    with pytest.raises(ValueError):
        evaluate.retrieval_ranks(sim, matches)


def test_retrieval_report_several_captions_per_video():
    s = 1 / np.sqrt(2)
    video = np.eye(3)
    text = np.array(
        [
            [1.0, 0.0, 0.0],  # video 0: sims [1, 0, 0]      -> rank 1
            [0.6, 0.8, 0.0],  # video 0: sims [.6, .8, 0]    -> rank 2
            [0.0, 0.6, 0.8],  # video 0: sims [0, .6, .8]    -> rank 3 (tie with nothing, 2 above)
            [0.0, 0.6, 0.8],  # video 1: sims [0, .6, .8]    -> rank 2
            [s, 0.0, s],
        ]
    )  # video 2: sims [s, 0, s]      -> rank 2 (tie with video 0)
    video_of_text = np.array([0, 0, 0, 1, 2])
    r = evaluate.retrieval_report(torch.tensor(text), torch.tensor(video), video_of_text, ks=(1, 2, 5))
    assert r["ranks"]["text_to_video"].tolist() == [1, 2, 3, 2, 2]
    # video -> text as CLIP4Clip ranks it: each video ranks the 3 videos' caption groups, a group scored by
    # its best caption for that video (texts of video 0: 0-2, of video 1: 3, of video 2: 4)
    # video 0 -> texts [1, .6, 0, 0, s]: groups [1, 0, s], its own (1) first -> 1
    # video 1 -> texts [0, .8, .6, .6, 0]: groups [.8, .6, 0], its own .6 below group 0 -> 2
    #            (ranking its caption among all 5 captions would give 3: text 1 above, text 2 tied)
    # video 2 -> texts [0, 0, .8, .8, s]: groups [.8, .8, s], its own below both -> 3
    assert r["ranks"]["video_to_text"].tolist() == [1, 2, 3]
    assert r["text_to_video"] == pytest.approx(
        {"R@1": 0.2, "R@2": 0.8, "R@5": 1.0, "MdR": 2.0, "MnR": 2.0, "gallery": 3, "queries": 5}
    )
    assert r["video_to_text"] == pytest.approx(
        {"R@1": 1 / 3, "R@2": 2 / 3, "R@5": 1.0, "MdR": 2.0, "MnR": 2.0, "gallery": 3, "queries": 3}
    )
    with pytest.raises(ValueError):  # video 2 without a caption
        evaluate.retrieval_report(text, video, [0, 0, 0, 1, 1])
    with pytest.raises(ValueError):
        evaluate.retrieval_report(text, video, [0, 0, 0, 1, 3])


def test_retrieval_recall_tie_counts_against():
    # every text is equally similar to every image: each true pair ties with two others -> rank 3
    r = evaluate.retrieval_recall(torch.eye(3), torch.ones(3, 3) / np.sqrt(3), ks=(1, 2, 3))
    assert r == {f"{d}_R@{k}": float(k == 3) for d in ("image_to_text", "text_to_image") for k in (1, 2, 3)}
    # one tie: image 0 scores text 0 and text 1 equally -> image 0 at rank 2, the others at rank 1
    img = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    txt = torch.tensor([[0.6, 0.0, 0.8], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    r = evaluate.retrieval_recall(img, txt, ks=(1, 2))
    assert r["image_to_text_R@1"] == pytest.approx(2 / 3) and r["image_to_text_R@2"] == 1.0


def test_recall_ci_brackets_its_estimate():
    ranks = np.random.default_rng(0).integers(1, 20, size=200)
    est, lo, hi = evaluate.recall_ci(ranks, 5)
    assert est == pytest.approx(np.mean(ranks <= 5))
    assert lo < est < hi and hi - lo < 0.2
    assert evaluate.recall_ci([1, 1, 1], 1) == (1.0, 1.0, 1.0)


def test_ood_metrics_against_direct_computation():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        s_in, s_out = rng.normal(1.0, 1.0, 1000), rng.normal(0.0, 1.0, 800)
        # FPR95: accept 95 % of in-distribution scores, count the OOD scores that pass
        direct = np.mean(s_out >= np.percentile(s_in, 5))
        assert evaluate.fpr_at_tpr(s_in, s_out) == pytest.approx(direct, abs=1 / len(s_out))
        # AUROC = P(in > out) + P(in == out) / 2
        pairs = s_in[:, None] - s_out[None, :]
        m = evaluate.ood_metrics(s_in, s_out)
        assert m["auroc"] == pytest.approx(np.mean(pairs > 0) + 0.5 * np.mean(pairs == 0), abs=1e-9)
        assert m["fpr95"] == evaluate.fpr_at_tpr(s_in, s_out, 0.95)
        assert 0.6 < m["fpr95"] < 0.85  # shift of 1 sd: about 1 - Phi(1 - 1.645) = 0.74
    # small exact case: in [1..20], out [0.5, 1.5, 19.5]; 95 % of in = 19 scores >= 2 -> out 19.5 passes
    assert evaluate.fpr_at_tpr(np.arange(1, 21), [0.5, 1.5, 19.5]) == pytest.approx(1 / 3)
    assert evaluate.fpr_at_tpr(np.arange(1, 21), [0.5, 1.5, 19.5], tpr=1.0) == pytest.approx(2 / 3)
    # perfectly separated
    assert evaluate.ood_metrics(rng.uniform(2, 3, 100), rng.uniform(0, 1, 100)) == {"auroc": 1.0, "fpr95": 0.0}
    # identical distributions
    m = evaluate.ood_metrics(rng.normal(size=2000), rng.normal(size=2000))
    assert abs(m["auroc"] - 0.5) < 0.04 and abs(m["fpr95"] - 0.95) < 0.03


def test_the_auroc_of_a_resample_from_its_counts_is_the_auroc_of_the_resampled_scores_bit_for_bit():
    """`ResampledAuroc` counts the drawn pairs against the OOD scores sorted once; ties (within and
    across the sides), repeated draws and unequal sizes come out exactly as `auroc` of the arrays drawn."""
    rng = np.random.default_rng(3)
    s_in, s_out = np.round(rng.normal(0.5, 1, 300), 1), np.round(rng.normal(0, 1, 170), 1)  # many ties
    at = evaluate.ResampledAuroc(s_in, s_out)
    assert at(np.ones(300, int), np.ones(170, int)) == evaluate.auroc(s_in, s_out)
    for _ in range(200):
        i, o = rng.integers(0, 300, 300), rng.integers(0, 170, 170)
        assert at(evaluate.counts(i, 300), evaluate.counts(o, 170)) == evaluate.auroc(s_in[i], s_out[o])
    i, o = np.zeros(300, int), rng.integers(0, 170, 170)  # one score drawn every time
    assert at(evaluate.counts(i, 300), evaluate.counts(o, 170)) == evaluate.auroc(s_in[i], s_out[o])
    assert np.isnan(evaluate.ResampledAuroc([np.nan, 1.0], [0.0])(np.ones(2, int), np.ones(1, int)))
    assert np.isnan(evaluate.auroc([np.nan, 1.0], [0.0]))  # as `auroc` says
    with pytest.raises(ValueError, match="both sides"):
        evaluate.ResampledAuroc([], [0.0])


def test_two_level_interval_counts_the_draws():
    """A random baseline's interval must cover the spread between its draws, not only the images'."""
    rng = np.random.default_rng(0)
    images = rng.normal(0.5, 0.2, 1000)  # per-image difficulty, shared by every condition
    draws = images + rng.normal(0, 0.05, (20, 1))  # 20 random sets, each shifting all images alike
    fixed = images + 0.1
    d, lo, hi = intervals.two_level_ci(fixed, draws)
    _, plo, phi = intervals.paired_ci(fixed, draws.mean(0))  # images only, draws held fixed
    assert lo < d < hi and (hi - lo) > 5 * (phi - plo)
    sd = draws.mean(1).std(ddof=1) / np.sqrt(20)  # the draws' standard error: the width's main part
    assert 0.7 * 2 * 1.96 * sd < hi - lo < 1.4 * 2 * 1.96 * sd
    # one draw a side: the paired image bootstrap itself
    assert intervals.two_level_ci(fixed, draws[0]) == intervals.paired_ci(fixed, draws[0])


def test_two_level_interval_pairs_draws_made_together():
    rng = np.random.default_rng(1)
    low = rng.normal(0.5, 0.1, (10, 300)) + rng.normal(0, 0.1, (10, 1))
    high = low - 0.02  # each equal-count draw: its high half costs 2 pp more than its low half
    paired = intervals.two_level_ci(low, high, paired_draws=True)
    apart = intervals.two_level_ci(low, high)
    assert paired[1] > 0.019 and paired[2] < 0.021  # the draws' spread cancels
    assert apart[1] < 0 < apart[2]
    with pytest.raises(ValueError, match="paired draws"):
        intervals.two_level_ci(low, high[:5], paired_draws=True)
