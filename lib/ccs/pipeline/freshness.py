"""Whether a page is up to date, decided by content, not file times.

Each executed page stores in its metadata the digest of what produced it: the notebook source, the
library and its data files, the page's parameters and the model's weights (`digest`). A page whose
stored digest matches is current, so a fresh clone (where every file has the same time) executes
nothing, and a changed parameter re-runs exactly the pages it feeds. The Snakefile sees this through a
stamp file per page (`stamp`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from functools import cache
from pathlib import Path

from ccs.cache import library_digest
from ccs.pipeline import gridfile, paths
from ccs.pipeline.gridfile import Run


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
    for part in (
        run.source.read_bytes(),
        library_digest().encode(),
        json.dumps(params, sort_keys=True).encode(),
        weights_digest(run.model).encode(),
    ):
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
    return [run for run in gridfile.runs(path) if not is_current(run)]


def stamp(run: Run) -> tuple[Path, Path]:
    """The two files through which Snakemake sees whether `run`'s page is current: its input, a stamp
    dated to the epoch while the page's stored digest matches (never newer than anything) and to now
    when it does not (newer than anything); and its output, a "done" file that stands for the page.
    The page itself is not a Snakemake output because Snakemake deletes a job's outputs before it
    runs the job: an interrupted run would lose the page. A current page gets its done file here,
    so a fresh clone, which has none, runs nothing."""
    path, done = paths.stamp_files(run.model, run.experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_current(run):
        if not path.exists() or path.stat().st_mtime != 0:
            path.write_text(digest(run))
            os.utime(path, (0, 0))
        done.touch()
    else:
        # Written now, newer than the done file, and unlike any stamp before it: Snakemake re-runs a job
        # whose input is newer than its output only if the input's content differs from what the job's
        # last run recorded, and a page can be stale again for the digest it last ran with (an older copy
        # put back, `git checkout book/runs`).
        path.write_text(f"{digest(run)} stale at {time.time_ns()}")
    return path, done
