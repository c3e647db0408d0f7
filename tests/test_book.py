"""The book builds with warnings as errors, and its pages render offline."""

from ccs import pipeline


def test_book_builds_strictly_and_serves_its_own_mathjax(built_book):
    html = built_book
    intro = (html / "book" / "intro.html").read_text()
    assert "Concept Consistency" in intro
    assert "_static/mathjax/tex-svg.js" in intro and "cdn.jsdelivr.net" not in intro
    assert (html / "_static" / "mathjax" / "tex-svg.js").stat().st_size > 100_000
    for run in pipeline.runs():
        page = html / run.notebook.relative_to(pipeline.ROOT).with_suffix(".html")
        assert page.is_file(), page
        assert "<img" in page.read_text(), f"{page.name} shows no figure"
