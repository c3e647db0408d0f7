"""A pool's text embeddings (`embed`), cached on disk per (model weights, pool contents) in an
``.npz`` that also holds their CRC-32, verified when read: a damaged file is reported (a
``ccs.cache.CacheWarning`` naming it) and recomputed."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from ccs.pools.loading import _warn
from ccs.pools.pool import Pool


def _read_embeddings(path: Path, rows: int) -> tuple[np.ndarray | None, str | None]:
    """The embeddings cached at `path` (None if absent or damaged) and what is wrong (None if
    nothing): the file must load, hold float32 [rows, D] and match its stored CRC-32."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # (np.load leaks the
            emb, crc = z["embeddings"], z["crc32"]  # file it opens when the archive is unreadable)
    except FileNotFoundError:
        return None, None
    except Exception as e:  # truncated (BadZipFile, EOFError), garbled (ValueError), a member missing
        return None, f"unreadable ({type(e).__name__}: {e})"
    if emb.dtype != np.float32 or emb.ndim != 2 or len(emb) != rows or crc.shape != ():
        return None, f"holds {emb.dtype}{list(emb.shape)}, expected float32[{rows}, D]"
    if zlib.crc32(np.ascontiguousarray(emb)) != int(crc):
        return None, "checksum mismatch (its contents changed after they were written)"
    return emb, None


def embed(pool: Pool, model_name: str, model, tokenizer, batch_size: int = 256) -> np.ndarray:
    """Normalised text embeddings [M, D] (float32) of a pool, cached per (model weights, pool) in an
    ``.npz`` with their CRC-32, written atomically. A cache file that is unreadable, truncated, of
    the wrong shape or fails its checksum is reported (a CacheWarning naming it) and recomputed."""
    from ccs.cache import cache_dir, write_atomic
    from ccs.fingerprints import fingerprint
    from ccs.evaluate import text_embeddings

    slug = re.sub(r"[^A-Za-z0-9._+-]", "_", pool.name)[:40]
    folder = cache_dir("text_embeddings", model_name)
    stem = f"{slug}-{pool.key}-{fingerprint(model)[:16]}"
    path = folder / f"{stem}.npz"
    emb, problem = _read_embeddings(path, len(pool))
    if emb is not None:
        return emb
    if problem is not None:
        _warn(f"Damaged text-embedding cache {path}: {problem}. Recomputing it.")
    emb = text_embeddings(model, tokenizer, list(pool.texts), batch_size=batch_size).numpy()
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    write_atomic(
        path, lambda f: np.savez(f, embeddings=emb, crc32=np.uint32(zlib.crc32(emb))), size=emb.nbytes + 1024
    )  # a full disk: an error naming the file, no temporary file
    (folder / f"{stem}.npy").unlink(missing_ok=True)  # the previous format: no checksum
    return emb
