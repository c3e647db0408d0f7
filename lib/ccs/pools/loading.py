"""A pool by name, path or URL (`load`): "world" (the generated pool, `ccs.pools.world_pool`), any
pool file by path (``.txt``: one description per line; ``.tsv``/``.csv``: a ``text`` column and
optionally ``concept``, ``value``, ``in_world``; `read`, `write`) or by URL (fetched only with
``download=True``, then cached: `fetch`). ``"textspan"`` names TextSpan's 3,498 general image
descriptions, the pool of the paper for real models. `subset` takes every k-th line of a pool.

A downloaded pool file gets a ``.crc32`` sidecar, verified when the file is read: a damaged download
is reported (a ``ccs.cache.CacheWarning`` naming it) and fetched again or, when the network may not be
reached, named in an error that says to delete and fetch it again.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ccs.pools.pool import Pool, PoolNotAvailableError
from ccs.pools.world_pool import world

TEXTSPAN_URL = "https://raw.githubusercontent.com/yossigandelsman/clip_text_span/main/text_descriptions/google_3498_english.txt"
ALIASES = {"textspan": TEXTSPAN_URL}


def read(path: str | Path, name: str | None = None) -> Pool:
    """A pool from a file: ``.txt`` one description per line (blank lines skipped), or ``.tsv`` /
    ``.csv`` with a ``text`` column and optional ``concept``, ``value``, ``in_world`` columns."""
    path = Path(path)
    if not path.is_file():
        raise PoolNotAvailableError(f"No pool file at {path}.")
    name = name or path.stem
    if path.suffix in (".tsv", ".csv"):
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", keep_default_na=False)
        if "text" not in df:
            raise ValueError(f"{path} has no 'text' column (columns: {', '.join(df.columns)}).")
        get = lambda c, f=str: tuple(map(f, df[c])) if c in df else None  # noqa: E731
        in_world = get("in_world", lambda v: str(v).lower() in ("true", "1"))
        return Pool(name, get("text"), get("concept"), get("value"), in_world)
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return Pool(name, tuple(ln for ln in lines if ln))


def write(pool: Pool, path: str | Path) -> Path:
    """Save a pool: ``.txt`` (texts only) or ``.tsv`` (with its ground truth)."""
    path = Path(path)
    if path.suffix == ".txt":
        path.write_text("\n".join(pool.texts) + "\n", encoding="utf-8")
    else:
        pool.frame().to_csv(path, sep="\t", index=False)
    return path


def _url_file(url: str) -> Path:
    from ccs.cache import cache_dir

    digest = hashlib.blake2b(url.encode(), digest_size=6).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1]) or "pool.txt"
    return cache_dir("pools") / f"{digest}-{stem}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".crc32")


def _download_problem(path: Path) -> str | None:
    """What is wrong with a downloaded pool file (None if it matches the size and CRC-32 recorded
    when it was downloaded, or if it was put there by hand, without a record)."""
    try:
        record = json.loads(_sidecar(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"its checksum record {_sidecar(path)} is unreadable ({type(e).__name__}: {e})"
    try:
        data = path.read_bytes()
        size, crc = int(record["bytes"]), int(record["crc32"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    if len(data) != size:
        return f"{'truncated' if len(data) < size else 'grown'} ({len(data)} of {size} bytes)"
    if zlib.crc32(data) != crc:
        return "checksum mismatch (its contents changed after the download)"
    return None


def _warn(message: str) -> None:
    from ccs.cache import CacheWarning

    warnings.warn(message, CacheWarning, stacklevel=3)


def fetch(url: str, timeout: float = 30) -> Path:
    """Download a pool file into the cache (once) and return its path. A cached download that no
    longer matches its recorded checksum is reported and downloaded again."""
    path = _url_file(url)
    if path.is_file():
        problem = _download_problem(path)
        if problem is None:
            return path
        _warn(f"Damaged pool download {path}: {problem}. Downloading it again.")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except (urllib.error.URLError, OSError) as e:
        raise PoolNotAvailableError(
            f"Could not download the pool {url} ({e}). Offline? Download the file on a machine "
            f"with internet and pass its path instead, or put it at {path}."
        ) from None
    _write_atomic(_sidecar(path), json.dumps({"url": url, "bytes": len(data), "crc32": zlib.crc32(data)}).encode())
    _write_atomic(path, data)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    from ccs.cache import write_atomic  # a full disk: an error naming the file, no temporary file left

    write_atomic(path, data)


def subset(pool: Pool, n: int) -> Pool:
    """`n` lines of a pool spread evenly over it (every k-th line, so every concept keeps its share),
    with their ground truth; the whole pool when n >= its size."""
    if n >= len(pool):
        return pool
    idx = np.linspace(0, len(pool) - 1, n).round().astype(int)
    pick = lambda col: None if col is None else tuple(col[i] for i in idx)  # noqa: E731
    return Pool(f"{pool.name}:{n}", pick(pool.texts), pick(pool.concepts), pick(pool.values), pick(pool.in_world))


def load(spec: str = "world", *, download: bool = False) -> Pool:
    """A pool by name ("world", "world:N" for N lines of it, "textspan"), path or URL. A URL (or "textspan") is read from the
    cache; it is downloaded only with ``download=True``, never behind your back."""
    if spec == "world":
        return world()
    if spec.startswith("world+"):
        return world(combos=int(spec.split("+", 1)[1]))
    if spec.startswith("world:"):  # a quick pool: every k-th line of the world pool, ground truth kept
        n = spec.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise PoolNotAvailableError(f"pool {spec!r}: 'world:N' takes a number of lines N >= 1")
        return subset(world(), int(n))
    url = ALIASES.get(spec, spec)
    if re.match(r"https?://", url):
        path = _url_file(url)
        if not path.is_file():
            if not download:
                raise PoolNotAvailableError(
                    f"The pool {spec!r} ({url}) is not downloaded. Fetch it once with "
                    f"`ccs pool fetch {spec}` (or load(..., download=True)), which needs the network."
                )
            path = fetch(url)
        elif problem := _download_problem(path):
            if not download:
                raise PoolNotAvailableError(
                    f"The downloaded pool {spec!r} at {path} is damaged ({problem}). Delete that "
                    f"file and fetch it again with `ccs pool fetch {spec}` (or load(..., "
                    "download=True)), which needs the network."
                )
            path = fetch(url)
        return read(path, name=spec if spec in ALIASES else None)
    if not Path(spec).exists():
        raise PoolNotAvailableError(
            f"Unknown pool {spec!r}: not 'world', not one of {', '.join(ALIASES)}, not a URL and not a file on this machine."
        )
    return read(spec)
