"""Decomposing an image set batch by batch into a folder on disk (`stream`), resumable after an
interruption and verified before reuse, and into the project cache, in a folder named by the model's
weights, the images and the settings, under a lock (`cached`, `exclusive`)."""

from __future__ import annotations

import hashlib
import os
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ccs.cache import CacheWarning
from ccs.decompose.folder import (
    FORMAT,
    Decomposition,
    _check,
    _create,
    _dtype,
    _npy_problem,
    _read_meta,
    _shapes,
    _write_meta,
    _write_rows,
)
from ccs.decompose.terms import _blocks, components
from ccs.fingerprints import fingerprint, images_hash

_PROGRESS = ("done", "crc32")  # meta fields that change while streaming; the rest are settings


def _batches(images, preprocess, start: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Preprocessed batches from image `start` on. `images`: a uint8 array/tensor [N,3,H,W]
    (normalised with `preprocess`), a float tensor (already preprocessed), or a dataset whose items
    are image tensors or (image, label) pairs."""
    n = len(images)
    for i in range(start, n, batch_size):
        j = min(n, i + batch_size)
        if isinstance(images, (torch.Tensor, np.ndarray)):
            x = torch.as_tensor(images[i:j])
        else:
            items = [images[k] for k in range(i, j)]
            x = torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])
        yield preprocess(x) if x.dtype == torch.uint8 else x


def stream(
    model: nn.Module,
    images: Sequence,
    out: str | Path,
    *,
    layers: int = 4,
    batch_size: int = 64,
    convention: str = "centred",
    preprocess=None,
    progress: bool = True,
    key: str = "",
) -> Decomposition:
    """Decompose `images` in batches into fp16 arrays under the folder `out`; returns them.

    Memory is bounded by the batch size. After every batch the arrays are flushed and the count of
    finished images recorded with the running CRC-32 of each array (see the comment above
    `CacheWarning`), so a call interrupted for any reason resumes where it stopped when called
    again with the same arguments (`key` names the inputs, e.g. a hash of the images; a folder with
    a different key, shape or convention is started afresh, silently).

    A folder is reused (finished or to resume) only after it is verified: meta.json parses, each
    array has the expected shape, dtype and file size, and every row written so far matches its
    checksum. A damaged folder (truncated or unreadable array, invalid meta.json, checksum mismatch)
    is reported with a `CacheWarning` naming the file and what is wrong, then rebuilt from scratch.
    """
    from tqdm.auto import tqdm

    from ccs.models import tensor_preprocess

    blocks = _blocks(model)
    visual = getattr(model, "visual", model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n, L = len(images), len(blocks)
    H = blocks[-1].attn.num_heads
    D = visual.proj.shape[1]
    shapes = _shapes(n, layers, H, D)
    meta = {
        "format": FORMAT,
        "key": key,
        "n": n,
        "layers": list(range(L - layers, L)),
        "heads": H,
        "head_dim": visual.transformer.width // H,
        "dim": D,
        "convention": convention,
        "done": 0,
        "crc32": dict.fromkeys(shapes, 0),
    }
    old, problem = _read_meta(out)
    settings = {k: v for k, v in meta.items() if k not in _PROGRESS}
    if old is not None and {k: v for k, v in old.items() if k not in _PROGRESS} == settings:
        problem = _check(out, old, shapes)
        if problem is None:
            meta = old
    if problem is not None:
        warnings.warn(f"Damaged decomposition cache: {problem}. Recomputing {out} from scratch.", CacheWarning, stacklevel=2)
    if meta is not old:
        (out / "meta.json").unlink(missing_ok=True)  # a rebuild cut short must not look resumable
        _create(out, shapes)
        _write_meta(out, meta)
    start = meta["done"]
    if start < n:
        from ccs.cache import FULL_DISK, no_space, reserve, write_error

        preprocess = preprocess or tensor_preprocess(model)
        offsets = {name: _npy_problem(out / f"{name}.npy", shape, _dtype(name))[1] for name, shape in shapes.items()}
        fds = {}
        try:
            for name, shape in shapes.items():  # (a folder of an older version may be sparse)
                file = out / f"{name}.npy"
                fds[name] = os.open(file, os.O_WRONLY)
                size = offsets[name] + int(np.prod(shape, dtype=np.int64)) * _dtype(name).itemsize
                try:
                    reserve(fds[name], size)
                except OSError as e:
                    if e.errno in FULL_DISK:
                        raise no_space(out, size, f"the rest of the decomposition of {n} images") from None
                    raise write_error(file, size, e) from None
            device = next(visual.parameters()).device
            bar = tqdm(total=n, initial=start, desc="decompose", unit="img", disable=not progress)
            i = start
            for x in _batches(images, preprocess, start, batch_size):
                c = components(model, x.to(device), layers, convention)
                j = i + len(x)
                for name in shapes:
                    data = _write_rows(fds, offsets, out, name, i, getattr(c, name).cpu().numpy())
                    meta["crc32"][name] = zlib.crc32(data, meta["crc32"][name])
                for name in shapes:  # the rows are on disk before meta.json counts them
                    try:
                        os.fsync(fds[name])
                    except OSError as e:
                        raise write_error(out / f"{name}.npy", 0, e) from None
                meta["done"] = i = j
                _write_meta(out, meta)
                bar.update(len(x))
            bar.close()
        finally:
            for fd in fds.values():
                os.close(fd)
    return Decomposition(out, meta)


def cached(
    model: nn.Module,
    model_name: str,
    images,
    *,
    layers: int = 4,
    convention: str = "centred",
    batch_size: int = 64,
    progress: bool = True,
) -> Decomposition:
    """`stream` into the project cache, in a folder named by the model's weights, the images and
    the settings: a repeated call returns the stored arrays once their checksums are verified, an
    interrupted one resumes, a damaged one is rebuilt with a `CacheWarning` (see `stream`)."""
    from ccs.cache import cache_dir

    parts = [fingerprint(model), images_hash(images), str(layers), convention, str(FORMAT)]
    key = hashlib.blake2b("/".join(parts).encode(), digest_size=8).hexdigest()
    out = cache_dir("decompose", model_name, key)
    with exclusive(out):
        return stream(model, images, out, layers=layers, batch_size=batch_size, convention=convention, progress=progress, key=key)


@contextmanager
def exclusive(folder: Path):
    """Hold the lock of a cache folder that is written in place: pages run side by side (Snakemake
    with more cores than a page's threads) would otherwise build one folder at once, and one could
    read rows the other is still writing. The second waits, then finds the folder finished. The
    lock is the kernel's (flock): a process that dies releases it."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
