"""Reader pages hold what a reader needs: no path of the project's source tree, no file the page
writes for the pipeline, no word of the cache or of the project's development (those belong in the
README and benchmarks/README.md). Checked on what a reader sees: markdown cells and cell outputs of
every executed page, and the prose chapters."""

import json
import re

import pytest

from ccs import pipeline

# what a reader should not meet: the source tree, the pipeline's JSON files, cache and workshop words
WORKSHOP = re.compile(
    r"lib/ccs|ccs/data|\bsrc/|\w+\.json\b|\bcach(e|ed|ing)\b|draw\(s\)|\bflagged\b|compute_prs"
    r"|anchor paper|AVX|\bwrote\b|train-runs/|\.safetensors",
    re.IGNORECASE,
)


def _reader_text(nb: dict) -> list[tuple[str, str]]:
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            out.append((f"cell {i} (markdown)", "".join(cell["source"])))
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append((f"cell {i} output", "".join(o["text"])))
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in o.get("data", {}) and "image/png" not in o["data"]:
                    out.append((f"cell {i} {mime}", "".join(o["data"][mime])))
    return out


PAGES = sorted((pipeline.ROOT / "book" / "runs").glob("*/*.ipynb"))
# reproduce.md is the runbook for running the paper's models: where the caches and checkpoints live is
# what its readers need; regime.md (the regime study) gives the commands and the configuration file
# that reproduce each of its rows
CHAPTERS = sorted(p for p in (pipeline.ROOT / "book").rglob("*.md") if p.name not in ("reproduce.md", "regime.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_executed_pages_speak_to_readers(page):
    hits = [
        f"{where}: {m.group(0)!r} in …{text[max(0, m.start() - 60) : m.end() + 40]!r}…"
        for where, text in _reader_text(json.loads(page.read_text()))
        for m in [WORKSHOP.search(text)]
        if m
    ]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: str(p.relative_to(pipeline.ROOT / "book")))
def test_prose_chapters_speak_to_readers(chapter):
    text = re.sub(r"```\{code-cell\}.*?```|```.*?```", "", chapter.read_text(), flags=re.S)  # code examples may
    hits = [m.group(0) for m in WORKSHOP.finditer(text)]
    assert not hits, f"{chapter.name}: {hits}"


def test_a_teacher_finds_goals_exercises_with_answers_and_how_to_cite():
    """Issue 20's course frame: the course page, at least 10 exercises each with a glued answer key,
    a glossary of at least 25 terms, and a citation file naming the book and the paper."""
    import yaml

    book = pipeline.ROOT / "book"
    course = (book / "course.md").read_text()
    assert "Learning goals" in course and "two lab meetings" in course and "Prerequisites" in course
    exercises = (book / "exercises.md").read_text()
    numbered = re.findall(r"^## (\d+)\. ", exercises, flags=re.M)
    keys = re.findall(r"````\{dropdown\} Answer key", exercises)
    assert len(numbered) >= 10 and len(keys) == len(numbered)
    assert exercises.count("{glue:text}`runs/") >= 10  # numbers glued from executed pages, not typed
    glossary = (book / "glossary.md").read_text().split("```{glossary}", 1)[1]
    assert len(re.findall(r"^\S.*$", glossary, flags=re.M)) - 1 >= 25  # terms (the closing fence excluded)
    cff = yaml.safe_load((pipeline.ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] and "Concept Consistency" in cff["preferred-citation"]["title"]
    for chapter in (
        "method",
        "world",
        "experiments/soft_pruning",
        "experiments/concept_pruning",
        "experiments/shifted_ood",
        "experiments/video_retrieval",
    ):
        text = (book / f"{chapter}.md").read_text()
        assert "**Goals.**" in text and "## Summary" in text, chapter
