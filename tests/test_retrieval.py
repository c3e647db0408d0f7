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
