"""The Jupyter Book's own files: the table of contents `_toc.yml`, written from the grid, and the
book's copy of MathJax."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ccs.pipeline import gridfile, paths


def toc(path: Path | None = None) -> dict:
    """The Jupyter Book table of contents: the root page, the prose parts that come before the runs
    (`prose: before`), one part per model with its executed pages, then the prose parts after them
    (`prose: after`). Each prose part is ``{caption, chapters: [file, ...]}``; a plain list under
    `prose` is one part "Using the book" after the runs."""
    g = gridfile.grid(path)
    prose = g.get("prose") or {}
    if isinstance(prose, list):
        prose = {"after": [{"caption": "Using the book", "chapters": prose}]}

    def part(p: dict) -> dict:
        return {"caption": p["caption"], "chapters": [{"file": f} for f in p.get("chapters") or []]}

    parts = [part(p) for p in prose.get("before") or []]
    for model in g["models"]:
        chapters = [
            {"file": str(r.notebook.relative_to(paths.ROOT).with_suffix(""))} for r in gridfile.runs(path) if r.model == model
        ]
        parts.append({"caption": f"Runs: {model}", "chapters": chapters})
    parts += [part(p) for p in prose.get("after") or []]
    return {"format": "jb-book", "root": g.get("root", "book/intro"), "parts": [p for p in parts if p["chapters"]]}


def toc_text(path: Path | None = None) -> str:
    header = "# Written by `ccs toc` from pipeline.yaml; edit that file instead.\n"
    return header + yaml.safe_dump(toc(path), sort_keys=False)


def write_toc(path: Path | None = None, out: Path | None = None) -> Path:
    out = out or paths.TOC
    out.write_text(toc_text(path))
    return out


def install_static(dest: Path | None = None) -> Path:
    """Copy MathJax (from the django-static-mathjax wheel) into _mathjax/, a static folder of the book
    (see _config.yml for why not _static/)."""
    dest = dest or paths.mathjax()
    src = paths.mathjax_source()
    out = dest / "mathjax" / "tex-svg.js"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out
