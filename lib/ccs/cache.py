"""On-disk caching of expensive steps, keyed by their inputs and code (joblib.Memory).

The cache lives in ``$CCS_CACHE`` (default ``~/.cache/ccs``), so every notebook also runs alone and a
re-run of an unchanged step costs nothing. Delete the folder to start afresh.

joblib keys a result by the arguments and the source of the cached function only, not by the code
that function calls; `memory()` therefore lives in a folder named after a digest of the whole
library, so editing any module of `ccs` invalidates every joblib result instead of serving a stale one.
"""
from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

import joblib


class CacheWarning(UserWarning):
    """A cache entry was damaged (truncated, unreadable, changed on disk) and is recomputed."""


class CacheCorruptError(RuntimeError):
    """A damaged cache entry found where it cannot be recomputed: the message says what to delete."""


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (or a sub-folder of it), created on first use."""
    root = Path(os.environ.get("CCS_CACHE", Path.home() / ".cache" / "ccs")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@cache
def library_digest() -> str:
    """A digest of the `ccs` package: every module's source and the packaged data (vocabulary,
    calibration, paper facts, model configs). Names the joblib folder and enters every page's digest."""
    h = hashlib.sha256()
    lib = Path(__file__).parent
    for path in sorted([*lib.rglob("*.py"), *(lib / "data").glob("*"), *(lib / "model_configs").glob("*")]):
        h.update(str(path.relative_to(lib)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@cache
def memory() -> joblib.Memory:
    """The joblib.Memory shared by all cached steps."""
    return joblib.Memory(cache_dir("joblib", library_digest()), verbose=0)
