"""The book's pipeline: the grid in pipeline.yaml, papermill runs of the notebooks, the table of contents.

`pipeline.yaml` is the only list of models and experiments. The Snakefile asks this module which
notebooks to produce and how; the tests ask it which notebooks to validate; `_toc.yml` is written from
it. A run converts `notebooks/<experiment>.py` (jupytext percent format) to a notebook, executes it
with papermill in `book/runs/<model>/`, and only then moves it into place, so an interrupted run
never leaves a half-written notebook behind.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the repository (lib/ccs/pipeline.py)
GRID = ROOT / "pipeline.yaml"
TOC = ROOT / "_toc.yml"


@dataclass(frozen=True)
class Run:
    model: str
    experiment: str
    parameters: dict = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return ROOT / "notebooks" / f"{self.experiment}.py"

    @property
    def notebook(self) -> Path:
        return ROOT / "book" / "runs" / self.model / f"{self.experiment}.ipynb"


def grid(path: Path = GRID) -> dict:
    return yaml.safe_load(path.read_text())


def runs(path: Path = GRID) -> list[Run]:
    """Every (model, experiment) notebook the book contains, in book order."""
    g = grid(path)
    return [Run(model, exp, dict((cfg or {}).get("parameters") or {}))
            for model in g["models"] for exp, cfg in g["experiments"].items()
            if model in (cfg or {}).get("models", g["models"])]


def find(model: str, experiment: str, path: Path = GRID) -> Run:
    for run in runs(path):
        if (run.model, run.experiment) == (model, experiment):
            return run
    raise KeyError(f"({model}, {experiment}) is not in {path.name}; add it there first.")


def toc(path: Path = GRID) -> dict:
    """The Jupyter Book table of contents: one part per model, then the prose appendix."""
    g = grid(path)
    parts = []
    for model in g["models"]:
        chapters = [{"file": str(r.notebook.relative_to(ROOT).with_suffix(""))}
                    for r in runs(path) if r.model == model]
        parts.append({"caption": f"Runs: {model}", "chapters": chapters})
    parts.append({"caption": "Using the book", "chapters": [{"file": f} for f in g.get("prose", [])]})
    return {"format": "jb-book", "root": g.get("root", "book/intro"),
            "parts": [p for p in parts if p["chapters"]]}


def toc_text(path: Path = GRID) -> str:
    header = "# Written by `ccs toc` from pipeline.yaml; edit that file instead.\n"
    return header + yaml.safe_dump(toc(path), sort_keys=False)


def write_toc(path: Path = GRID, out: Path = TOC) -> Path:
    out.write_text(toc_text(path))
    return out


def execute(run: Run, *, progress: bool = True, extra: dict | None = None) -> Path:
    """Execute one notebook with papermill and put it at `run.notebook` (atomically)."""
    import jupytext
    import nbformat
    import papermill

    run.notebook.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(run.source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = {"model": run.model, **run.parameters, **(extra or {})}
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernel inherits it: no progress bars in pages
    with tempfile.TemporaryDirectory(dir=run.notebook.parent) as tmp:
        src, dst = Path(tmp) / "source.ipynb", Path(tmp) / "executed.ipynb"
        nbformat.write(nb, src)
        papermill.execute_notebook(src, dst, parameters=parameters, cwd=str(run.notebook.parent),
                                   kernel_name="python3", progress_bar=progress)
        executed = nbformat.read(dst, as_version=4)
        _tidy(executed)
        nbformat.write(executed, dst)
        os.replace(dst, run.notebook)
    return run.notebook


def _tidy(nb) -> None:
    """Hide papermill's injected-parameters cell behind a toggle and drop run-specific metadata."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    for key in ("input_path", "output_path", "environment_variables"):  # machine-specific
        nb.metadata.get("papermill", {}).pop(key, None)


def install_static(dest: Path = ROOT / "_static") -> Path:
    """Copy MathJax (from the django-static-mathjax wheel) into the book's static files."""
    import shutil
    from importlib import resources

    src = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5" / "tex-svg.js"
    out = dest / "mathjax" / "tex-svg.js"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out
