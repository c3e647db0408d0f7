"""Every path of the pipeline: the repository and the files and folders in it that the pipeline reads
and writes. The other modules of `ccs.pipeline` ask this one, at the moment they need a path, so that
moving the repository (a test's `monkeypatch.setattr(paths, "ROOT", tmp_path)`) moves all of them.

Under ROOT: `pipeline.yaml` (GRID) the grid, `_toc.yml` (TOC) the table of contents written from it,
`notebooks/` the notebook sources, `book/runs/` the executed pages, `outputs/` the runs with
parameters of their own, `runs-tmp/` the scratch folders papermill works in (the same file system as
the pages, for atomic moves), `.snakemake/` Snakemake's lock and the stamps it reads, `_mathjax/` the
book's copy of MathJax (all but the first four git-ignored).
"""

from __future__ import annotations

from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1]  # the `ccs` package (lib/ccs/pipeline/paths.py)
ROOT = LIBRARY.parents[1]  # the repository
GRID = ROOT / "pipeline.yaml"
TOC = ROOT / "_toc.yml"


def library_modules() -> list[Path]:
    """The library's source files, subpackages included."""
    return sorted(LIBRARY.rglob("*.py"))


def source(experiment: str) -> Path:
    """The notebook source of an experiment (jupytext percent format)."""
    return ROOT / "notebooks" / f"{experiment}.py"


def page(model: str, experiment: str) -> Path:
    """The book page of an experiment run for a model."""
    return ROOT / "book" / "runs" / model / f"{experiment}.ipynb"


def output(model: str, experiment: str, tag: str) -> Path:
    """The notebook of a run with parameters of its own, in a folder named by `tag` (its digest)."""
    return ROOT / "outputs" / model / f"{experiment}-{tag}" / f"{experiment}.ipynb"


def scratch() -> Path:
    """The folder of papermill's scratch folders."""
    return ROOT / "runs-tmp"


def stamp_file(model: str, experiment: str) -> Path:
    """The stamp through which Snakemake sees whether a page is current (`freshness.stamps`)."""
    return ROOT / ".snakemake" / "ccs-stamps" / model / f"{experiment}.stamp"


def done_file(model: str) -> Path:
    """The "done" file that stands for a model's pages, the output of the Snakefile's job that runs them."""
    return ROOT / ".snakemake" / "ccs-stamps" / f"{model}.done"


def locks(root: Path | None = None) -> Path:
    """Snakemake's lock folder in the repository `root` (default: ROOT)."""
    return (root or ROOT) / ".snakemake" / "locks"


def lock_owner(root: Path | None = None) -> Path:
    """The record of the Snakemake process that holds the lock in `root` (default: ROOT)."""
    return (root or ROOT) / ".snakemake" / "ccs-lock-owner.json"


def mathjax() -> Path:
    """The book's static folder that MathJax is copied into (see _config.yml for why not _static/)."""
    return ROOT / "_mathjax"


def mathjax_source() -> Path:
    """MathJax's SVG build in the django-static-mathjax wheel."""
    from importlib import resources

    return Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5" / "tex-svg.js"
