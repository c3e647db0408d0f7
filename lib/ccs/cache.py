"""On-disk caching of expensive steps, keyed by their inputs and code (joblib.Memory).

The cache lives in ``$CCS_CACHE`` (default ``~/.cache/ccs``), so every notebook also runs alone and a
re-run of an unchanged step costs nothing. Delete the folder to start afresh.
"""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import joblib


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (or a sub-folder of it), created on first use."""
    root = Path(os.environ.get("CCS_CACHE", Path.home() / ".cache" / "ccs")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@cache
def memory() -> joblib.Memory:
    """The joblib.Memory shared by all cached steps."""
    return joblib.Memory(cache_dir("joblib"), verbose=0)
