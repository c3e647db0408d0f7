"""Every sentence of the prose that carries a computed verdict stays true whatever the verdict is.

The chapters glue the default model's verdicts into their sentences. A sentence written around one
outcome ("... the ground truth reverses it", "is supported, as the paper finds") becomes false when a
re-run, another model or another seed gives another verdict. This test re-renders the chapters with
the glued values of every model of the grid, and fails where a sentence that holds a verdict-bearing
value also states an outcome in words of its own, or where a glued verdict is not one of the words
the book defines.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from ccs import pipeline

ROOT = Path(__file__).resolve().parents[1]
GLUE = re.compile(r"\{glue:text\}`(?P<path>[^`]*?runs/)(?P<model>[^/]+)/(?P<page>[^/.]+)\.ipynb::(?P<key>[^`:]+)(:[^`]*)?`")
# the glue keys whose value is a verdict, and the words such a value may start with
VERDICT_KEYS = {
    "pruning-verdict",
    "pruning-carried",
    "pruning-other-verdict",
    "pruning-lenient-verdict",
    "pruning-function-verdict",
    "ood-verdict",
    "ood-paper-verdict",
    "ood-other-verdict",
    "video-verdict",
    "video-other-verdict",
    "concepts-verdict",
    "concepts-carried",
    "concepts-other-verdict",
    "concepts-function-verdict",
    "concepts-scene-vs-shape",
    "concepts-shape-vs-scene",
}
ALLOWED = ("supported", "contradicted", "inconclusive", "no verdict", "n/a")
# words that state an outcome: outside a glued value they would assume one
OUTCOME = re.compile(
    r"\b(not supported|supports?|supported|contradict(s|ed)?|inconclusive|reverses?|reversed|"
    r"confirms?|confirmed|refutes?|refuted|replicates on every)\b",
    re.I,
)


def _glued(model: str, page: str) -> dict[str, str]:
    path = ROOT / "book" / "runs" / model / f"{page}.ipynb"
    if not path.is_file():
        return {}
    out = {}
    for cell in nbformat.read(path, 4).cells:
        for o in cell.get("outputs", []):
            name = (o.get("metadata") or {}).get("scrapbook", {}).get("name")
            text = o.get("data", {}).get("application/papermill.record/text/plain")
            if name and text is not None:
                out[name] = text.strip("'\"")
    return out


def _chapters() -> list[Path]:
    return [p for p in sorted((ROOT / "book").rglob("*.md")) if "runs" not in p.parts]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;:!?])\s+|\n\s*\n|\n[-|*] ", text) if s.strip()]


@pytest.mark.parametrize("model", pipeline.grid()["models"])
def test_glued_verdicts_are_words_the_book_defines(model):
    for page in ("pruning", "ood", "video", "concepts"):
        for key, value in _glued(model, page).items():
            if key in VERDICT_KEYS:
                assert value.lower().startswith(ALLOWED), f"{model}/{page} glues {key} = {value!r}"


@pytest.mark.parametrize("model", pipeline.grid()["models"])
def test_no_sentence_around_a_glued_verdict_assumes_its_outcome(model):
    problems = []
    for chapter in _chapters():
        text = chapter.read_text()
        for sentence in _sentences(text):
            keys = [m["key"] for m in GLUE.finditer(sentence)]
            if not any(k in VERDICT_KEYS for k in keys):
                continue
            # re-render with this model's values, then take the glued values out: what is left is the book's own words
            rendered = GLUE.sub(lambda m: "\0" + _glued(model, m["page"]).get(m["key"], "n/a") + "\0", sentence)
            own_words = re.sub(r"\0[^\0]*\0", " ", rendered)
            own_words = re.sub(r"\*[^*]*\*|\{term\}`[^`]*`|`[^`]*`", " ", own_words)  # defined terms, code and names
            hit = OUTCOME.search(own_words)
            if hit:
                problems.append(f"{chapter.relative_to(ROOT)}: {hit.group(0)!r} beside a glued verdict: {sentence.strip()[:160]}")
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_sentence_that_assumes_the_outcome(tmp_path, monkeypatch):
    """The detector itself: a sentence that says the verdict in its own words is caught."""
    bad = (
        "On `ccs-tiny` the claim is {glue:text}`runs/ccs-tiny/pruning.ipynb::pruning-verdict:s`, so the ground truth reverses it."
    )
    good = "On `ccs-tiny` the claim is {glue:text}`runs/ccs-tiny/pruning.ipynb::pruning-verdict:s`."
    for s, expect in ((bad, True), (good, False)):
        rendered = GLUE.sub(lambda m: "\0supported\0", s)
        own = re.sub(r"\*[^*]*\*|\{term\}`[^`]*`|`[^`]*`", " ", re.sub(r"\0[^\0]*\0", " ", rendered))
        assert bool(OUTCOME.search(own)) is expect
