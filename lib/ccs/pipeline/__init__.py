"""The book's pipeline: the grid in pipeline.yaml, papermill runs of the notebooks, the table of contents.

`pipeline.yaml` is the only list of models and experiments. The Snakefile asks this package which
notebooks to produce and whether each is up to date; the tests ask it which notebooks to validate;
`_toc.yml` is written from it.

**Up to date is decided by content, not file times.** Each executed page stores in its metadata the
digest of what produced it: the notebook source, the library and its data files, the page's
parameters and the model's weights (`digest`). A page whose stored digest matches is current, so a
fresh clone (where every file has the same time) executes nothing, and a changed parameter re-runs
exactly the pages it feeds. The Snakefile sees this through a stamp file per page (`stamps`).

**Book pages are written only by the book's run.** `execute` converts `notebooks/<experiment>.py`
(jupytext percent format) to a notebook and runs it with papermill in a scratch folder; only when it
has finished are the notebook and the files it wrote (its JSON) moved into place, so an interruption
at any moment leaves the previous page as it was. A run with parameters other than the grid's goes to
`outputs/<model>/<experiment>-<digest>/`, never over a committed page. Parameters are checked against
the notebook's parameters cell, where each is declared once (name, type, range), before a kernel starts.

One module a job:

- `paths`: every path (the repository ROOT, GRID, TOC, notebooks/, book/runs/, outputs/, runs-tmp/,
  .snakemake/, _mathjax/), looked up when used
- `gridfile`: the grid (`pipeline.yaml`) and its runs (`Run`, `grid`, `runs`, `find`)
- `params`: the parameter declarations of a notebook and their range language (`check_parameters`)
- `freshness`: what produced a page, whether it is current, and Snakemake's stamps (`digest`, `stale`)
- `locks`: Snakemake's lock, cleared when the run that took it is dead (`clear_stale_lock`)
- `schedule`: which model's pages Snakemake starts first (`work_left`, the pages rule's priority)
- `book`: the table of contents `_toc.yml` and the book's MathJax (`write_toc`, `install_static`)
- `execution`: papermill runs, one kernel for a model's pages in turn, signals, and tidying a page (`execute`)

`pipeline.NAME` is the NAME of the module that owns it, read at each use; setting `pipeline.NAME`
(a test's monkeypatch) sets it in that module, where the code that uses it looks it up.
"""

from __future__ import annotations

import sys
import types

from ccs.pipeline import book, execution, freshness, gridfile, locks, params, paths, schedule

# every name of the former module ccs/pipeline.py, by the module that owns it now
_OWNERS = {
    paths: ("ROOT", "GRID", "TOC", "done_file"),
    gridfile: ("Run", "grid", "runs", "find"),
    params: (
        "ParameterError",
        "Declaration",
        "KINDS",
        "declarations",
        "notebook_parameters",
        "check_parameters",
        "_is_text",
        "_is_model",
        "_is_pool",
        "_world",
        "_bound",
        "_clause",
    ),
    freshness: ("library_digest", "weights_digest", "digest", "stored_digest", "is_current", "stale", "stamps"),
    locks: ("record_lock_owner", "forget_lock_owner", "clear_stale_lock", "_owner_file", "_process", "_alive", "_snakemakes"),
    book: ("toc", "toc_text", "write_toc", "install_static"),
    schedule: ("work_left",),
    execution: (
        "output_path",
        "NotebookError",
        "library_errors",
        "exit_with_parent",
        "execute",
        "execute_in_turn",
        "PATH_VARIABLES",
        "check_destination",
        "tidy",
        "TINY_MODEL",
        "_ANSI",
        "_notebook_error",
        "_ipc_kernel_manager",
        "_Signals",
        "_absolute_paths_for_the_kernel",
        "_move",
        "_suffix_figure_labels",
    ),
}
_HOME = {name: module for module, names in _OWNERS.items() for name in names}

__all__ = sorted(name for name in _HOME if not name.startswith("_") and name != "library_digest")


def _owned(module: types.ModuleType, name: str) -> property:
    """`pipeline.NAME` as a view of NAME in `module`: read there at each use, and set there (a data
    descriptor, so that pytest's monkeypatch sets and restores it through the view)."""
    return property(
        lambda self: getattr(module, name), lambda self, value: setattr(module, name, value), doc=f"{module.__name__}.{name}"
    )


class _Package(types.ModuleType):
    """`ccs.pipeline`, whose names live in the modules that own them (see `_OWNERS`)."""

    def __dir__(self):
        return sorted({*super().__dir__(), *_HOME})


for _name, _module in _HOME.items():
    setattr(_Package, _name, _owned(_module, _name))
del _name, _module

sys.modules[__name__].__class__ = _Package
