"""The exercises' answer keys are the numbers of the pages they cite, signs included."""

import json
import re
from pathlib import Path

import pytest

from test_prose_verdicts import GLUE, _glued

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = (ROOT / "book" / "exercises.md").read_text()


def _number(text: str) -> float:
    return float(re.match(r"\s*([\u2212+-]?\d+(?:\.\d+)?)", text)[1].replace("\u2212", "-"))


def test_every_glued_value_an_answer_key_cites_exists():
    missing = [m[0] for m in GLUE.finditer(EXERCISES) if m["key"] not in _glued(m["model"], m["page"])]
    assert not missing, missing


def test_the_colour_answer_key_has_the_concepts_page_s_numbers_and_sign_convention():
    """Exercise 4: the change under the colour heads on the colour and shape tasks, and the excess
    over random heads, which the key says is the change under the colour heads minus the change
    under random heads (negative: the colour heads cost more)."""
    assert "(the change under the colour heads minus the change under\nrandom heads; negative:" in EXERCISES
    glued = _glued("ccs-tiny", "concepts")
    page = json.loads((ROOT / "book" / "runs" / "ccs-tiny" / "concepts.json").read_text())
    change, control, excess = page["change"]["colour"], page["control"]["colour"], page["excess"]["colour"]
    assert _number(glued["concepts-colour-on-colour"]) == pytest.approx(change["colour"], abs=0.051)
    assert _number(glued["concepts-colour-on-shape"]) == pytest.approx(change["shape"], abs=0.051)
    assert _number(glued["concepts-colour-excess"]) == pytest.approx(excess["colour"], abs=0.051)
    assert excess["colour"] == pytest.approx(change["colour"] - control["colour"], abs=0.002)  # the stated convention


# ---------------------------------------------------------------------------------------------
# Every other answer key against the page it cites: the glued numbers are the page's, and every
# verdict word follows from the intervals printed beside it (the class of mistake of #28's item 1:
# a positive interval beside a verdict that says otherwise).

INTERVAL = re.compile(r"([\u2212+-]?\d+(?:\.\d+)?) \[([\u2212+-]?\d+(?:\.\d+)?), ([\u2212+-]?\d+(?:\.\d+)?)\]")


def _interval(text: str) -> tuple[float, float, float]:
    m = INTERVAL.search(text)
    assert m, f"no interval in {text!r}"
    return tuple(float(g.replace("\u2212", "-")) for g in m.groups())


def _page(page: str, model: str = "ccs-tiny") -> dict:
    return json.loads((ROOT / "book" / "runs" / model / f"{page}.json").read_text())


def _pp(claim: dict) -> tuple[float, float, float]:
    return tuple(100 * claim[k] for k in ("difference", "low", "high"))


def _word(glued: str) -> str:
    return glued.split(";")[0].split(" (")[0].strip()


def _cited(number: int) -> str:
    """Exercise `number`'s text, from its heading to the next."""
    return re.search(rf"^## {number}\. .*?(?=^## )", EXERCISES, re.S | re.M)[0]


def test_exercise_7s_table_puts_each_verdict_beside_intervals_that_give_it():
    from ccs import verdicts

    glued, page = _glued("ccs-tiny", "pruning"), _page("pruning")
    assert "high vs low | high vs random | verdict" in _cited(7)
    rows = {"pruning-lenient": None, "pruning": page["claims"], "pruning-other": page["other_sets_claims"]}
    for prefix, claims in rows.items():
        shown = [_interval(glued[f"{prefix}-high-vs-{c}"]) for c in ("low", "random")]
        assert _word(glued[f"{prefix}-verdict"]) == verdicts.verdict(shown), prefix
        if claims is not None:  # the glued numbers are the page's record, in percentage points
            for got, c in zip(shown, ("high vs low", "high vs random")):
                assert got == pytest.approx(_pp(claims[c]), abs=0.051)
    assert (
        _word(glued["pruning-verdict"]) == page["verdict"]
        and _word(glued["pruning-other-verdict"]) == page["other_sets_verdict"]["verdict"]
    )


def test_exercises_2_3_5_and_6_cite_the_ccs_page_s_heads_counts_and_figures():
    glued, page = _glued("ccs-tiny", "ccs"), _page("ccs")
    heads = {h["name"]: h for h in page["heads"]}
    colour = [(n, h["ccs"]) for n, h in heads.items() if h["label"] == "colour"]
    assert [(n, int(c)) for n, c in re.findall(r"(L\d+\.H\d+) \(CCS (\d)\)", glued["ccs-colour-heads"])] == colour
    counts = page["category_counts"]
    assert glued["ccs-counts"] == f"{counts['high']} high, {counts['moderate']} moderate, {counts['low']} low"
    assert sorted(glued["ccs-high-heads"].split(", ")) == sorted(n for n, h in heads.items() if h["ccs"] == 5)
    for key, truth in (("ccs-calibrated-figures", page["ground_truth"]), ("ccs-lenient-figures", page["ground_truth_lenient"])):
        assert glued[key] == (
            f"label accuracy {truth['label_accuracy']:.2f}, judge \u03ba {truth['judge_kappa']:.2f}, "
            f"CCS Spearman {truth['ccs_spearman']:.2f}"
        )


def test_exercises_8_and_9_follow_the_pruning_page():
    glued, page = _glued("ccs-tiny", "pruning"), _page("pruning")
    assert glued["pruning-carried"] == page["carried"]["text"] and _word(glued["pruning-carried"]) == page["verdict"]
    assert glued["pruning-untestable"].startswith("none") == (not page["untestable_tasks"])
    rho = _interval(glued["pruning-importance"])
    record = page["ccs_importance_spearman"]
    assert rho == pytest.approx((record["rho"], record["low"], record["high"]), abs=0.006)
    assert ("includes zero" in glued["pruning-importance"]) == (rho[1] <= 0 <= rho[2])


def test_exercise_10_cites_the_ood_page_s_verdicts_and_detector():
    from ccs import verdicts

    glued, page = _glued("ccs-tiny", "ood"), _page("ood")
    paper = [_pp(c) for c in page["paper_claims"].values()]
    assert _word(glued["ood-paper-verdict"]) == page["paper_verdict"] == verdicts.verdict(paper)
    assert _word(glued["ood-verdict"]) == page["verdict"]
    original = next(d for d in page["detection"] if d["OOD set"] == "novel-shapes" and d["pruned"] == "original")
    assert _interval(glued["ood-auroc-novel"]) == pytest.approx(
        (original["auroc"], original["auroc_lo"], original["auroc_hi"]), abs=0.0006
    )


def test_exercise_11_cites_the_video_page_s_ceiling_and_verdict():
    from ccs import verdicts

    glued, page = _glued("ccs-tiny", "video"), _page("video")
    original = next(r for r in page["retrieval"] if r["pruned"] == "original" and r["direction"] == "text \u2192 video")
    assert f"R@1 is {original['R@1']:.1f} % and R@5 {original['R@5']:.1f} %" in glued["video-ceiling"]
    assert _word(glued["video-verdict"]) == page["verdict"] == verdicts.verdict([_pp(c) for c in page["claims"].values()])


def test_exercise_12s_key_includes_summaries_the_replication_page_writes():
    for name in re.findall(r"\{include\} (replication/summary-[\w-]+\.md)", _cited(12)):
        assert (ROOT / "book" / name).is_file(), name
