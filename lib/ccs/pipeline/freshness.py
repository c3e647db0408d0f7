"""Whether a page is up to date, decided by content, not file times.

Each executed page stores in its metadata the digest of what produced it: the notebook source, the
library and its data files, the page's parameters and the model's weights (`digest`). A page whose
stored digest matches is current, so a fresh clone (where every file has the same time) executes
nothing, and a changed parameter re-runs exactly the pages it feeds. The Snakefile sees this through a
stamp file per page (`stamps`).
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


def stamps(runs: list[Run]) -> dict[tuple[str, str], tuple[Path, bool]]:
    """The files through which Snakemake sees whether pages are current: for each run, (model,
    experiment) -> its stamp and whether its page is stale. A stamp is dated to the epoch while the
    page's stored digest matches (never newer than anything) and to now when it does not (newer than
    anything). The output of a model's job is a "done" file that stands for its pages (`paths.done_file`);
    the pages themselves are not Snakemake outputs because Snakemake deletes a job's outputs before it
    runs the job: an interrupted run would lose them. A model whose pages are all current gets its done
    file here, so a fresh clone, which has none, runs nothing; every stamp is written first, so a stale
    one is never older than that file."""
    found = {}
    for run in runs:
        path = paths.stamp_file(run.model, run.experiment)
        path.parent.mkdir(parents=True, exist_ok=True)
        current = is_current(run)
        if current:
            if not path.exists() or path.stat().st_mtime != 0:
                path.write_text(digest(run))
                os.utime(path, (0, 0))
        else:
            # Written now, newer than the done file, and unlike any stamp before it: Snakemake re-runs a
            # job whose input is newer than its output only if the input's content differs from what the
            # job's last run recorded, and a page can be stale again for the digest it last ran with (an
            # older copy put back, `git checkout book/runs`).
            path.write_text(f"{digest(run)} stale at {time.time_ns()}")
        found[run.model, run.experiment] = (path, not current)
    stale_models = {model for (model, _), (_, stale) in found.items() if stale}
    for model in {model for model, _ in found} - stale_models:
        paths.done_file(model).touch()
    return found
