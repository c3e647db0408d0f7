"""On-disk caching of expensive steps, keyed by their inputs and code.

The cache lives in ``$CCS_CACHE`` (default ``~/.cache/ccs``), so every notebook also runs alone and a
re-run of an unchanged step costs nothing. Delete the folder to start afresh.

Nothing is read back unchecked: every entry carries a checksum (or is validated like fresh data) and
a damaged one is reported with its path (`CacheWarning`) and recomputed. `checked` stores arrays so
(the pruning pages' embeddings and classifiers), in a folder named after a digest of the whole library
(`library_digest`), so editing any module of `ccs` invalidates them instead of serving a stale one;
`memory()` (joblib.Memory, keyed by the cached function's source and arguments only) lives in such a
folder too, but has no checksums: use `checked` for new steps. Files are written whole or not at all
(`write_atomic`), and a full disk is a `DiskFullError` naming the path and the space needed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import zlib
from functools import cache
from pathlib import Path
from typing import Callable


class CacheWarning(UserWarning):
    """A cache entry was damaged (truncated, unreadable, changed on disk) and is recomputed."""


class CacheCorruptError(RuntimeError):
    """A damaged cache entry found where it cannot be recomputed: the message says what to delete."""


class DiskFullError(OSError):
    """Not enough disk space for a file of the cache: the message names the path, the space it needs
    and the space free (errno ENOSPC)."""


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)  # errnos of a full disk (or quota); EFBIG (a file-size limit) is not


def size_text(nbytes: float) -> str:
    """'1.5 MB' for 1.5e6 bytes (powers of 1000, as `df -H` shows them)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000


def free_space(path: str | Path) -> int | None:
    """Bytes free on the disk that holds `path` (or its nearest existing parent); None if unknown."""
    path = Path(path)
    for p in (path, *path.parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


def no_space(path: str | Path, needed: int, what: str = "") -> DiskFullError:
    """The error for a full disk: names `path`, the bytes `needed` and those free."""
    free = free_space(path)
    e = DiskFullError(
        f"not enough disk space for {what or path}{f' ({path})' if what else ''}: it needs "
        f"{size_text(needed)}, {'an unknown amount' if free is None else size_text(free)} is free "
        f"on that disk. Free some space, or point CCS_CACHE to a larger disk."
    )
    e.errno, e.path = errno.ENOSPC, str(path)
    return e


def write_error(path: str | Path, needed: int, e: OSError) -> OSError:
    """An OSError raised while writing `path`, as an error that names it: DiskFullError for a full
    disk (or quota), else an OSError with the path and the reason (read-only disk, permissions)."""
    if e.errno in FULL_DISK:
        return no_space(path, needed)
    out = OSError(f"cannot write {path}: {e.strerror or e}")
    out.errno, out.path = e.errno, str(path)
    return out


def write_atomic(path: str | Path, data: bytes | Callable, *, fsync: bool = True, size: int = 0) -> None:
    """Write a file whole or not at all: a temporary file beside it (``.tmp-*``), flushed and (with
    `fsync`) synced, then renamed over `path`. `data`: the bytes, or a function that writes them to
    the open file (then `size` says about how many, for the message of a full disk). A write that
    fails (a full disk, a read-only folder) leaves no temporary file and raises an OSError naming
    `path` (DiskFullError when the disk is full)."""
    path = Path(path)
    needed = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else size
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise write_error(path, needed, e) from None
    except BaseException:  # an interruption: no temporary file is left behind either
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def reserve(fd: int, size: int) -> None:
    """Allocate the first `size` bytes of an open file on disk now (posix_fallocate; a plain write of
    zeros where the system has none), so that a full disk is an OSError here and not a crash (SIGBUS)
    when the file is later written through a memory map. Bytes already written are kept."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    end = os.fstat(fd).st_size  # no fallocate: write zeros past the current end
    chunk = bytes(1 << 20)
    while end < size:
        end += os.pwrite(fd, chunk[: min(len(chunk), size - end)], end)


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (or a sub-folder of it), created on first use."""
    root = Path(os.environ.get("CCS_CACHE", Path.home() / ".cache" / "ccs")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# what no page computes with: the command line, the regime study (it trains models and writes its own
# page), and the book run's process supervision: its lock, its stamps (a change to how a page's digest is
# computed makes the pages stale by itself), the order of its jobs and the parent-death launcher
OUTSIDE_PAGES = (
    "cli",
    "regime",
    "data/regime.yaml",
    "pipeline/locks.py",
    "pipeline/freshness.py",
    "pipeline/schedule.py",
    "lifeline.py",
)


@cache
def library_digest() -> str:
    """A digest of the `ccs` package: every module's code (`code`) and the packaged data (vocabulary,
    calibration, paper facts, model configs). Names the joblib folder and enters every page's digest.
    The command line (`ccs/cli/`), the regime study (`ccs/regime/`, `data/regime.yaml`: it writes its
    own page) and the book run's lock, stamps, job order and launcher (`OUTSIDE_PAGES`) are left out:
    no page and no cached step computes with them, so changing a command, the study or the run's
    supervision re-executes nothing."""
    h = hashlib.sha256()
    lib = Path(__file__).parent
    files = [*lib.rglob("*.py"), *(lib / "data").glob("*"), *(lib / "model_configs").glob("*")]
    inside = [p for p in files if not {p.relative_to(lib).parts[0], p.relative_to(lib).as_posix()} & set(OUTSIDE_PAGES)]
    for path in sorted(inside):
        h.update(str(path.relative_to(lib)).encode())
        h.update(_code_digest(path) if path.suffix == ".py" else path.read_bytes())
    return h.hexdigest()[:16]


def _code_digest(path: Path) -> bytes:
    """The SHA-256 of `code(path)`, remembered in the cache under the hash of the file's bytes: parsing
    the whole library takes 0.4 s, too much for every `ccs run`. Without a usable cache it is computed."""
    memo = None
    try:
        memo = cache_dir("code") / hashlib.sha256(path.read_bytes()).hexdigest()
        known = bytes.fromhex(memo.read_text())
        if len(known) == 32:
            return known
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256(code(path)).digest()
    if memo is not None:
        try:
            write_atomic(memo, digest.hex().encode(), fsync=False)
        except OSError:  # a read-only or full cache: the digest is still right, only not remembered
            pass
    return digest


def code(path: Path) -> bytes:
    """A module's source without what cannot change a result: comments, docstrings, blank lines and
    trailing spaces (so rewording a comment re-executes no page). The spans are found by `tokenize`
    and `ast` and cut from the text, which is then the same on every Python the project supports
    (a dump of the syntax tree would differ between versions). A module that does not parse is
    taken whole."""
    import ast
    import io
    import tokenize

    text = path.read_text()
    try:
        tree = ast.parse(text)
        comments = [(t.start, t.end) for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError):
        return text.encode()
    lines = text.split("\n")

    def char(row: int, col: int) -> tuple[int, int]:  # ast counts a line's UTF-8 bytes, tokenize its characters
        return row, len(lines[row - 1].encode()[:col].decode())

    docstrings = [
        (char(d.lineno, d.col_offset), char(d.end_lineno, d.end_col_offset))
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(d := node.body[0], ast.Expr)
        and isinstance(d.value, ast.Constant)
        and isinstance(d.value.value, str)
    ]
    for (r0, c0), (r1, c1) in sorted(comments + docstrings, reverse=True):  # from the end: earlier spans stay put
        lines[r0 - 1 : r1] = [lines[r0 - 1][:c0] + lines[r1 - 1][c1:]]
    return "\n".join(line.rstrip() for line in lines if line.strip()).encode()


@cache
def memory():
    """The joblib.Memory shared by all cached steps (folder named by `library_digest`)."""
    import joblib

    return joblib.Memory(cache_dir("joblib", library_digest()), verbose=0)


# --- checked arrays --------------------------------------------------------------------------------
#
# One array per ``.npz`` file, with a CRC-32 of its dtype, shape and bytes (the checksum of the
# decomposition cache, see ccs.decompose), written atomically: a file that is truncated, unreadable,
# or whose contents changed after they were written (same size or not) is reported with a
# CacheWarning naming it, then recomputed and rewritten. Used for the pruning pages' embeddings and
# classifiers (in a folder named by `library_digest`, like joblib's results were).


def _array_crc(array) -> int:
    import numpy as np

    header = f"{array.dtype.str}{list(array.shape)}".encode()
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8), zlib.crc32(header))


def read_array(path: str | Path):
    """The array stored at `path` (None if absent or damaged) and what is wrong with it (None if
    nothing): the file must load and its array match the stored CRC-32."""
    import numpy as np

    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            array, crc = z["array"], z["crc32"]
    except FileNotFoundError:
        return None, None
    except Exception as e:  # truncated (BadZipFile, EOFError), garbled (zip CRC, ValueError), a member missing
        return None, f"unreadable ({type(e).__name__}: {e})"
    if crc.shape != () or crc.dtype != np.uint32:
        return None, f"its checksum is a {crc.dtype}{list(crc.shape)}, not a uint32"
    if _array_crc(array) != int(crc):
        return None, "checksum mismatch (its contents changed after they were written)"
    return array, None


def write_array(path: str | Path, array) -> None:
    """Store `array` at `path` with its CRC-32 (atomically; see `write_atomic`)."""
    import numpy as np

    array = np.ascontiguousarray(array)
    write_atomic(path, lambda f: np.savez(f, array=array, crc32=np.uint32(_array_crc(array))), size=array.nbytes + 1024)


def checked(kind: str, key: object, compute: Callable, what: str = ""):
    """`compute()` (a numpy array), cached on disk under ``arrays/<library digest>/<kind>/`` by
    `key` (any JSON-able value naming the inputs) and checked when read: a damaged file is reported
    with a CacheWarning naming it and what is wrong, then recomputed and rewritten."""
    import json
    import warnings

    import numpy as np

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    path = cache_dir("arrays", library_digest(), kind) / f"{digest}.npz"
    array, problem = read_array(path)
    if array is not None:
        return array
    if problem is not None:
        warnings.warn(f"Damaged {what or kind} cache {path}: {problem}. Recomputing it.", CacheWarning, stacklevel=2)
    array = np.asarray(compute())
    write_array(path, array)
    return array
