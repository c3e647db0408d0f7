"""What every loader shares: a reproducible random subset of a split (`_subset`), a threaded map
over its files (`_parallel`), and the unpickler of a dataset's pickles (CIFAR's batches, CLIP4Clip's
raw-captions.pkl) that never runs what a pickle names (`load_data_pickle`)."""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ccs.datasets.registry import DatasetError


def _subset(total: int, n: int | None, seed: int, what: str) -> np.ndarray:
    """Indices of a reproducible random subset of at most `n` of `total` items (sorted): all of them
    when `n` is None or not smaller than `total` (a page asks for n images; a small copy has fewer)."""
    if n is not None and n < 1:
        raise DatasetError(f"n must be at least 1 (got {n})")
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def _parallel(fn: Callable, items, workers: int | None = None) -> list:
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


class _Refused(pickle.UnpicklingError):
    """A pickle that names something other than the plain data a dataset's pickle holds."""


# What CIFAR's batches (dicts of numpy uint8 arrays, lists of ints and byte strings, written by
# Python 2) and CLIP4Clip's raw-captions.pkl (a dict of lists of lists of strings) need, and nothing
# else: a pickle naming any other callable (os.system, builtins.eval, ...) is refused before it runs.
_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol 2 writes bytes under Python 3
    }
)


class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain data only (builtins' containers and numbers, numpy arrays): `find_class` admits
    the few numpy reconstruction functions listed above and refuses every other global."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"it names {module}.{name}, which a data pickle never holds (it would run code)")


def load_data_pickle(path: Path, encoding: str = "ASCII"):
    """`pickle.load` of a dataset's pickle, which never executes what the file names: a pickle that
    names anything but plain data and numpy arrays raises `_Refused` (an `UnpicklingError`)."""
    with open(path, "rb") as f:
        return _DataUnpickler(f, encoding=encoding).load()
