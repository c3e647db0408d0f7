"""A decomposition stored on disk (`Decomposition`): a folder of fp16 arrays and a meta.json with
their CRC-32 checksums; creating its arrays at full size, writing rows and meta.json, and verifying a
folder before it is reused (`_check`)."""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccs.cache import CacheCorruptError

FORMAT = 2  # bump when the stored arrays or meta.json change meaning (rebuilds cached folders)
# 2: meta.json holds CRC-32 checksums of the arrays, verified whenever a folder is reused
ARRAYS = ("heads", "mlps", "rest", "norms")

# ---------------------------------------------------------------------------------------------
# The folder
#
# A decomposition folder holds heads.npy, mlps.npy, rest.npy (fp16) and norms.npy (fp32), created at
# full size up front with their disk space reserved (posix_fallocate: a full disk is an error naming
# the folder and the space needed before any image is decomposed, never a SIGBUS of a sparse memory
# map), written batch by batch with plain writes (not through a memory map), and meta.json:
#
#   {"format", "key", "n", "layers", "heads", "head_dim", "dim", "convention": what was asked,
#    "done": how many images (leading rows) are written,
#    "crc32": {array name: CRC-32 of the raw bytes of that array's first `done` rows}}
#
# The checksum is CRC-32 (zlib), not a cryptographic hash: it is meant for accidental damage
# (truncation, zeroed pages, bit rot), it runs at several GB/s (blake2b is ~5x slower, more than 10 %
# of a cached re-read of a small decomposition) and its running value is a plain integer, so it is
# extended batch by batch as rows are written. A resumed folder is therefore verified in full (every
# row written so far, not just its structure), exactly as a finished one.


CHECK_BYTES = 1 << 24  # rows are checksummed in chunks of about this size (bounded memory)


def _dtype(name: str) -> np.dtype:
    return np.dtype(np.float32 if name == "norms" else np.float16)


def _shapes(n: int, layers: int, heads: int, dim: int) -> dict[str, tuple[int, ...]]:
    return {"heads": (n, layers, heads, dim), "mlps": (n, layers, dim), "rest": (n, dim), "norms": (n,)}


def _crc_file(file: Path, offset: int, nbytes: int) -> int:
    """The CRC-32 of `nbytes` bytes of `file` from `offset`, read in chunks into one buffer (a
    little faster than through a memory map, whose page faults cost more than the reads)."""
    buf = memoryview(bytearray(min(nbytes, CHECK_BYTES) or 1))
    crc = 0
    with open(file, "rb", buffering=0) as f:
        f.seek(offset)
        while nbytes > 0:
            k = f.readinto(buf[: min(len(buf), nbytes)])
            if not k:
                raise EOFError(f"{nbytes} bytes short")
            crc = zlib.crc32(buf[:k], crc)
            nbytes -= k
    return crc


def _npy_problem(file: Path, shape: tuple[int, ...], dtype: np.dtype) -> tuple[str | None, int]:
    """What is wrong with a .npy file that should hold a C-order `dtype` array of `shape` (None if
    its header says so and its size matches), and where its data start."""
    fmt = np.lib.format
    try:
        with open(file, "rb") as f:
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                return f"unsupported .npy version {version}", 0
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            got_shape, fortran, got_dtype = read(f)
            offset = f.tell()
        size = file.stat().st_size
    except FileNotFoundError:
        return "missing", 0
    except Exception as e:  # too short for a header, bad magic, garbled header, a folder, ...
        return f"unreadable .npy header ({type(e).__name__}: {e})", 0
    if tuple(got_shape) != tuple(shape) or got_dtype != dtype or fortran:
        return f"holds {got_dtype}{list(got_shape)}, expected {dtype}{list(shape)}", offset
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        return f"truncated ({size} of {expected} bytes)", offset
    if size > expected:
        return f"{size - expected} unexpected bytes after the data", offset
    return None, offset


def _check(path: Path, meta: dict, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why the folder does not hold what `meta` says (None if it does): the progress fields are
    valid, every array opens with its shape and dtype and its first `done` rows match their CRC-32."""
    done, crcs = meta.get("done"), meta.get("crc32")
    if not (
        type(done) is int
        and 0 <= done <= meta["n"]
        and isinstance(crcs, dict)
        and set(crcs) == set(shapes)
        and all(type(v) is int for v in crcs.values())
    ):
        return f"{path / 'meta.json'}: invalid progress fields (done={done!r}, crc32={crcs!r})"
    offsets = {}
    for name, shape in shapes.items():
        file = path / f"{name}.npy"
        problem, offsets[name] = _npy_problem(file, shape, _dtype(name))
        if problem:
            return f"{file}: {problem}"
    for name, shape in shapes.items():
        file = path / f"{name}.npy"
        row = int(np.prod(shape[1:], dtype=np.int64)) * _dtype(name).itemsize
        try:
            crc = _crc_file(file, offsets[name], done * row)
        except Exception as e:  # changed between the two loops, or an I/O error
            return f"{file}: unreadable ({type(e).__name__}: {e})"
        if crc != crcs[name]:
            return f"{file}: checksum mismatch (its contents changed after they were written)"
    return None


def _read_meta(path: Path) -> tuple[dict | None, str | None]:
    """The folder's meta.json (None if absent or invalid) and what is wrong with it (None if fine)."""
    file = path / "meta.json"
    try:
        text = file.read_text()
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:  # a folder, unreadable, not UTF-8
        return None, f"{file}: unreadable ({type(e).__name__}: {e})"
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"{file}: invalid JSON ({e})"
    if not isinstance(meta, dict):
        return None, f"{file}: not a JSON object"
    return meta, None


@dataclass
class Decomposition:
    """A decomposition stored on disk: fp16 memory-mapped arrays, read lazily."""

    path: Path
    meta: dict

    def array(self, name: str) -> np.ndarray:
        file = self.path / f"{name}.npy"
        try:
            return np.load(file, mmap_mode="r")
        except Exception as e:  # damaged after it was opened by `stream` (truncated, deleted, ...)
            raise CacheCorruptError(
                f"Cannot read {file} ({type(e).__name__}: {e}): the decomposition folder "
                f"{self.path} is damaged. Delete that folder and run again to recompute it."
            ) from e

    def verify(self) -> str | None:
        """What is wrong with the stored arrays (None if they are complete and match their
        checksums). `stream` and `cached` run this check before they hand a folder out."""
        m = self.meta
        shapes = _shapes(m["n"], len(m["layers"]), m["heads"], m["dim"])
        if problem := _check(self.path, m, shapes):
            return problem
        return None if m["done"] == m["n"] else f"{self.path}: {m['done']} of {m['n']} images done"

    @property
    def heads(self) -> np.ndarray:  # [N, K, H, D]
        return self.array("heads")

    @property
    def mlps(self) -> np.ndarray:  # [N, K, D]
        return self.array("mlps")

    @property
    def rest(self) -> np.ndarray:  # [N, D]
        return self.array("rest")

    @property
    def norms(self) -> np.ndarray:  # [N]
        return self.array("norms")

    @property
    def layers(self) -> list[int]:
        """The analysed layers' indices in the tower."""
        return self.meta["layers"]

    def head_means(self, chunk: int = 4096) -> np.ndarray:
        """Each head's mean term over the images [K, H, D] (read in chunks)."""
        heads = self.heads
        total = np.zeros(heads.shape[1:], dtype=np.float64)
        for i in range(0, len(heads), chunk):
            total += heads[i : i + chunk].astype(np.float64).sum(0)
        return (total / len(heads)).astype(np.float32)

    def embeddings(self, replace=None, chunk: int = 4096) -> np.ndarray:
        """The normalised image embeddings [N, D] as the sum of the stored terms (fp32), read in
        chunks of images. `replace` maps a chunk of head terms [n, K, H, D] to what should stand in
        their place (a reconstruction, an ablation). Not renormalised: zero-shot predictions do not
        depend on an image's scale."""
        heads, mlps, rest = self.heads, self.mlps, self.rest
        out = np.empty(rest.shape, dtype=np.float32)
        for i in range(0, len(out), chunk):
            h = heads[i : i + chunk].astype(np.float32)
            h = h if replace is None else replace(h)
            out[i : i + chunk] = rest[i : i + chunk] + mlps[i : i + chunk].astype(np.float32).sum(1) + h.sum((1, 2))
        return out


def _write_meta(path: Path, meta: dict) -> None:
    """Write meta.json atomically (temp file, fsync, rename): an interruption or a crash never
    leaves a half-written file, a full disk leaves no temp file and names the path."""
    from ccs.cache import write_atomic

    write_atomic(path / "meta.json", json.dumps(meta, indent=1).encode())


def _create(out: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """Create the (zero-filled) arrays of a folder at full size, their disk space reserved; on a full
    disk, remove them and raise DiskFullError naming the folder and the space the arrays need."""
    from ccs.cache import FULL_DISK, no_space, reserve, write_error

    fmt = np.lib.format
    sizes = {}
    try:
        for name, shape in shapes.items():
            file = out / f"{name}.npy"
            header = {"descr": fmt.dtype_to_descr(_dtype(name)), "fortran_order": False, "shape": shape}
            with open(file, "wb") as f:
                try:
                    fmt.write_array_header_1_0(f, header)
                except ValueError:  # a header too long for format 1.0
                    fmt.write_array_header_2_0(f, header)
                sizes[name] = f.tell() + int(np.prod(shape, dtype=np.int64)) * _dtype(name).itemsize
                f.flush()
                reserve(f.fileno(), sizes[name])
    except OSError as e:
        needed = sum(int(np.prod(shape, dtype=np.int64)) * _dtype(name).itemsize for name, shape in shapes.items())
        for name in shapes:
            (out / f"{name}.npy").unlink(missing_ok=True)
        if e.errno in FULL_DISK:
            raise no_space(out, needed, f"the decomposition of {shapes['norms'][0]} images") from None
        raise write_error(out, needed, e) from None


def _write_rows(fds: dict[str, int], offsets: dict[str, int], out: Path, name: str, start: int, rows: np.ndarray) -> bytes:
    """Write `rows` (C-order, the array's dtype) as rows start.. of array `name`: plain writes to
    the file (a failure is an OSError naming it). Returns the bytes written."""
    from ccs.cache import write_error

    data = np.ascontiguousarray(rows, dtype=_dtype(name)).reshape(-1).view(np.uint8).tobytes()
    row = len(data) // max(1, len(rows))
    pos, view = offsets[name] + start * row, memoryview(data)
    try:
        while view:
            k = os.pwrite(fds[name], view, pos)
            view, pos = view[k:], pos + k
    except OSError as e:
        raise write_error(out / f"{name}.npy", len(view), e) from None
    return data
