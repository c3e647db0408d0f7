"""The text-to-video page's claims (ccs.retrieval) on hand-made retrieval reports."""

import numpy as np
import pytest

from ccs import retrieval


def report(ranks):
    return {"ranks": {"text_to_video": np.asarray(ranks), "video_to_text": np.asarray(ranks)}}


REPORTS = {
    "original": report([1, 1, 1, 2]),
    "high": report([3, 2, 1, 5]),
    "low": report([1, 1, 1, 3]),
    "random/0": report([1, 2, 1, 2]),
    "random/1": report([1, 1, 2, 2]),
}


def test_hits_per_query_and_per_draw():
    assert retrieval.draw_hits(REPORTS, "random", 1).tolist() == [[1, 0, 1, 0], [1, 1, 0, 0]]
    assert retrieval.hits(REPORTS, "random", 1).tolist() == [1, 0.5, 0.5, 0]
    assert retrieval.hits(REPORTS, "high", 2).tolist() == [0, 1, 1, 0]
    with pytest.raises(KeyError, match="no condition or group 'equal'"):
        retrieval.hits(REPORTS, "equal", 1)


def test_claims_are_the_extra_r_at_1_lost_by_the_high_set():
    c = retrieval.claims(REPORTS)
    assert c["high vs low"][0] == pytest.approx(0.75 - 0.25)  # low finds 3 of 4 first, high 1 of 4
    assert c["high vs random"][0] == pytest.approx(0.5 - 0.25)
    assert not retrieval.at_ceiling(REPORTS)
    assert retrieval.at_ceiling({"original": report([1] * 200)})


@pytest.mark.slow
def test_reports_prune_each_condition_and_leave_the_model_as_it_was(tmp_path, monkeypatch):
    """On the trained tiny model and 12 concept-world clips: every condition gets a report whose ranks
    cover every query and pair caption i with clip i (the unpruned report equals one computed by hand),
    pruning every analysed head moves them, and the model comes back unchanged."""
    import torch

    from ccs import evaluate, models, world

    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    loaded = models.load("ccs-tiny")
    module = loaded.model.eval()
    batch = world.clips(12, 5, frames=2)
    text = evaluate.text_embeddings(module, loaded.tokenizer, [world.full_caption(r) for _, r in batch.attributes.iterrows()])
    layers = range(len(module.visual.transformer.resblocks))[-4:]
    every = [f"L{layer}.H{h}" for layer in layers for h in range(module.visual.transformer.resblocks[0].attn.num_heads)]
    before = {k: v.clone() for k, v in module.state_dict().items()}
    out = retrieval.reports("ccs-tiny", module, text, batch.frames, {"original": [], "all": every})
    assert list(out) == ["original", "all"]
    for r in out.values():
        assert r["ranks"]["text_to_video"].shape == (12,) and r["ranks"]["text_to_video"].min() >= 1
    assert not np.array_equal(out["original"]["ranks"]["text_to_video"], out["all"]["ranks"]["text_to_video"])
    by_hand = evaluate.retrieval_report(
        text, evaluate.pool_frames(_frame_embeddings(module, batch.frames), "paper"), np.arange(12)
    )
    assert np.array_equal(out["original"]["ranks"]["text_to_video"], by_hand["ranks"]["text_to_video"])
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def _frame_embeddings(module, frames):
    """Normalised image embeddings of every frame, [N, F, D], straight from open_clip's encode_image."""
    import torch

    from ccs import models

    n, f = frames.shape[:2]
    with torch.no_grad():
        emb = module.encode_image(models.tensor_preprocess(module)(frames.flatten(0, 1)))
    return torch.nn.functional.normalize(emb, dim=-1).view(n, f, -1)
