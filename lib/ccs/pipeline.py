"""The book's pipeline: the grid in pipeline.yaml, papermill runs of the notebooks, the table of contents.

`pipeline.yaml` is the only list of models and experiments. The Snakefile asks this module which
notebooks to produce and whether each is up to date; the tests ask it which notebooks to validate;
`_toc.yml` is written from it.

**Up to date is decided by content, not file times.** Each executed page stores in its metadata the
digest of what produced it: the notebook source, the library and its data files, the page's
parameters and the model's weights (`digest`). A page whose stored digest matches is current, so a
fresh clone (where every file has the same time) executes nothing, and a changed parameter re-runs
exactly the pages it feeds. The Snakefile sees this through a stamp file per page (`stamp`).

**Book pages are written only by the book's run.** `execute` converts `notebooks/<experiment>.py`
(jupytext percent format) to a notebook and runs it with papermill in a scratch folder; only when it
has finished are the notebook and the files it wrote (its JSON) moved into place, so an interruption
at any moment leaves the previous page as it was. A run with parameters other than the grid's goes to
`outputs/<model>/<experiment>-<digest>/`, never over a committed page. Parameters are checked against
the notebook's parameters cell (names, types) and `CHECKS` (ranges, choices) before a kernel starts.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from ccs.cache import library_digest

ROOT = Path(__file__).resolve().parents[2]  # the repository (lib/ccs/pipeline.py)
GRID = ROOT / "pipeline.yaml"
TOC = ROOT / "_toc.yml"
# Under ROOT (looked up when used): outputs/ holds runs with parameters of their own, runs-tmp/ the
# scratch folders papermill works in (the same file system as the pages, for atomic moves), and
# .snakemake/ccs-stamps/ the stamps Snakemake reads (all git-ignored).


class ParameterError(ValueError):
    """A notebook parameter that does not exist, has the wrong type, or is out of range."""


def _positive(v) -> bool:
    return v >= 1


def _natural(v) -> bool:
    return v >= 0


# Ranges and choices of the notebooks' parameters (names and types come from the notebooks).
CHECKS = {
    **{k: (_positive, "at least 1") for k in ("images", "texts", "texts_per_head", "last_layers", "seeds",
                                               "eval_images", "clips", "frames")},
    **{k: (_natural, "0 or more") for k in ("seed", "eval_seed", "clip_seed")},
    "backend": ({"embedding", "openai"}.__contains__, "'embedding' or 'openai'"),
    "sets": ({"run", "truth", "paper"}.__contains__, "'run', 'truth' or 'paper'"),
    "labels": ({"run", "truth", "paper"}.__contains__, "'run', 'truth' or 'paper'"),
    "ablation": ({"zero", "mean"}.__contains__, "'zero' or 'mean'"),
    "measure": ({"p_true", "correct"}.__contains__, "'p_true' or 'correct'"),
    "convention": ({"centred", "textspan"}.__contains__, "'centred' or 'textspan'"),
    "weights": ({"trained", "random"}.__contains__, "'trained' or 'random'"),
}


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


def grid(path: Path | None = None) -> dict:
    return yaml.safe_load((path or GRID).read_text())


def runs(path: Path | None = None) -> list[Run]:
    """Every (model, experiment) notebook the book contains, in book order."""
    g = grid(path)
    return [Run(model, exp, dict((cfg or {}).get("parameters") or {}))
            for model in g["models"] for exp, cfg in g["experiments"].items()
            if model in (cfg or {}).get("models", g["models"])]


def find(model: str, experiment: str, path: Path | None = None) -> Run:
    for run in runs(path):
        if (run.model, run.experiment) == (model, experiment):
            return run
    raise KeyError(f"({model}, {experiment}) is not in {(path or GRID).name}; add it there first.")


# --- parameters --------------------------------------------------------------------------------

def notebook_parameters(source: Path) -> dict:
    """The parameters a notebook declares: {name: default}, read from its parameters cell (the cell
    tagged ``parameters``) without running it."""
    import jupytext

    cells = [c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{source.name} needs exactly one cell tagged 'parameters'")
    out = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def check_parameters(source: Path, parameters: dict) -> None:
    """Raise a ParameterError unless every parameter is declared by the notebook, has the type of its
    default (an int where a float is expected is fine) and passes `CHECKS`."""
    declared = notebook_parameters(source)
    for name, value in parameters.items():
        if name not in declared:
            raise ParameterError(f"{source.stem} has no parameter {name!r}; its parameters: "
                                 f"{', '.join(declared)}")
        default = declared[name]
        expected = float if isinstance(default, float) else type(default)
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ParameterError(f"{source.stem}: {name} must be a {expected.__name__} (like its default "
                                 f"{default!r}), not {value!r}")
        if name in CHECKS and not CHECKS[name][0](value):
            raise ParameterError(f"{source.stem}: {name} must be {CHECKS[name][1]}, not {value!r}")


# --- what produced a page ----------------------------------------------------------------------

@cache
def weights_digest(model: str) -> str:
    """The weights a page ran with: the content of the packaged ccs-tiny weights; for a paper model the
    checkpoint's name and size (hashing gigabytes on every check would cost minutes), or 'missing'."""
    from ccs import models

    try:
        path = models.weights_path(model)
    except models.WeightsNotFoundError:
        return "missing"
    if models.spec(model).embedded:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.name}:{path.stat().st_size}"


def digest(run: Run, parameters: dict | None = None) -> str:
    """The digest of everything that produces the page of `run` (with `parameters` on top)."""
    params = {"model": run.model, **run.parameters, **(parameters or {})}
    h = hashlib.sha256()
    for part in (run.source.read_bytes(), library_digest().encode(), json.dumps(params, sort_keys=True).encode(),
                 weights_digest(run.model).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:32]


def stored_digest(notebook: Path) -> str | None:
    """The digest recorded in an executed page, or None (missing, unreadable, or from before digests)."""
    try:
        meta = json.loads(notebook.read_text()).get("metadata", {})
    except (OSError, ValueError):
        return None
    return meta.get("ccs", {}).get("digest")


def is_current(run: Run) -> bool:
    return stored_digest(run.notebook) == digest(run)


def stale(path: Path | None = None) -> list[Run]:
    """The grid's pages that are missing or were produced by something else than what is here now."""
    return [run for run in runs(path) if not is_current(run)]


def stamp(run: Run) -> tuple[Path, Path]:
    """The two files through which Snakemake sees whether `run`'s page is current: its input, a stamp
    dated to the epoch while the page's stored digest matches (never newer than anything) and to now
    when it does not (newer than anything); and its output, a "done" file that stands for the page.
    The page itself is not a Snakemake output because Snakemake deletes a job's outputs before it
    runs the job: an interrupted run would lose the page. A current page gets its done file here,
    so a fresh clone, which has none, runs nothing."""
    base = ROOT / ".snakemake" / "ccs-stamps" / run.model
    path, done = base / f"{run.experiment}.stamp", base / f"{run.experiment}.done"
    base.mkdir(parents=True, exist_ok=True)
    if is_current(run):
        if not path.exists() or path.stat().st_mtime != 0:
            path.write_text(digest(run))
            os.utime(path, (0, 0))
        done.touch()
    else:
        path.write_text(digest(run))  # written now: newer than the done file
    return path, done


# --- table of contents -------------------------------------------------------------------------

def toc(path: Path | None = None) -> dict:
    """The Jupyter Book table of contents: the root page, the prose parts that come before the runs
    (`prose: before`), one part per model with its executed pages, then the prose parts after them
    (`prose: after`). Each prose part is ``{caption, chapters: [file, ...]}``; a plain list under
    `prose` is one part "Using the book" after the runs."""
    g = grid(path)
    prose = g.get("prose") or {}
    if isinstance(prose, list):
        prose = {"after": [{"caption": "Using the book", "chapters": prose}]}

    def part(p: dict) -> dict:
        return {"caption": p["caption"], "chapters": [{"file": f} for f in p.get("chapters") or []]}

    parts = [part(p) for p in prose.get("before") or []]
    for model in g["models"]:
        chapters = [{"file": str(r.notebook.relative_to(ROOT).with_suffix(""))}
                    for r in runs(path) if r.model == model]
        parts.append({"caption": f"Runs: {model}", "chapters": chapters})
    parts += [part(p) for p in prose.get("after") or []]
    return {"format": "jb-book", "root": g.get("root", "book/intro"),
            "parts": [p for p in parts if p["chapters"]]}


def toc_text(path: Path | None = None) -> str:
    header = "# Written by `ccs toc` from pipeline.yaml; edit that file instead.\n"
    return header + yaml.safe_dump(toc(path), sort_keys=False)


def write_toc(path: Path | None = None, out: Path | None = None) -> Path:
    out = out or TOC
    out.write_text(toc_text(path))
    return out


# --- execution ---------------------------------------------------------------------------------

def output_path(run: Run, extra: dict | None = None) -> Path:
    """Where a run's notebook goes: its book page for a run of the grid with the grid's parameters,
    else a folder of its own under outputs/ named by the digest of its parameters."""
    in_grid = any(r == run for r in runs()) if GRID.is_file() else False
    if in_grid and all(run.parameters.get(k, object()) == v for k, v in (extra or {}).items()):
        return run.notebook
    return ROOT / "outputs" / run.model / f"{run.experiment}-{digest(run, extra)[:10]}" / f"{run.experiment}.ipynb"


def execute(run: Run, *, progress: bool = True, extra: dict | None = None, out_dir: Path | None = None) -> Path:
    """Check the parameters, execute one notebook with papermill in a scratch folder, then move it
    and the files it wrote into place (`output_path`, or the folder `out_dir`). Returns the
    notebook's path."""
    import jupytext
    import nbformat
    import papermill

    from ccs import models

    parameters = {"model": run.model, **run.parameters, **(extra or {})}
    check_parameters(run.source, parameters)
    if parameters.get("weights") != "random":  # a clear error now, before a kernel starts
        models.weights_path(run.model)
    out = Path(out_dir) / f"{run.experiment}.ipynb" if out_dir else output_path(run, extra)
    nb = jupytext.read(run.source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernel inherits it: no progress bars in pages
    scratch = ROOT / "runs-tmp"
    scratch.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"{run.model}-{run.experiment}-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        src, dst = Path(tmp) / "source.ipynb", Path(tmp) / "executed.ipynb"
        nbformat.write(nb, src)
        papermill.execute_notebook(src, dst, parameters=parameters, cwd=str(work), kernel_name="python3",
                                   progress_bar=progress)
        executed = nbformat.read(dst, as_version=4)
        tidy(executed)
        executed.metadata["ccs"] = {"digest": digest(run, extra), "parameters": parameters}
        nbformat.write(executed, dst)
        out.parent.mkdir(parents=True, exist_ok=True)
        for f in sorted(work.iterdir()):  # the files the notebook wrote (its JSON), then the page
            if f.is_file():
                os.replace(f, out.parent / f.name)
        os.replace(dst, out)
    return out


def tidy(nb) -> None:
    """Make a page depend on its content only: deterministic cell ids, the injected-parameters cell
    hidden behind a toggle, and no run-specific metadata (times, durations, paths)."""
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:03d}"
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    pm = nb.metadata.get("papermill", {})
    for key in list(pm):
        if key != "parameters":
            pm.pop(key)


def install_static(dest: Path | None = None) -> Path:
    """Copy MathJax (from the django-static-mathjax wheel) into _mathjax/, a static folder of the book
    (see _config.yml for why not _static/)."""
    dest = dest or ROOT / "_mathjax"
    from importlib import resources

    src = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5" / "tex-svg.js"
    out = dest / "mathjax" / "tex-svg.js"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out
