"""Exact direct contributions of attention heads to a CLIP image embedding.

For an open_clip ViT with class-token pooling, the normalised image embedding is a sum of terms:

    e / |e| = rest + sum_l mlps[l] + sum_{l,h} heads[l, h]

over the last K layers ``l`` and their heads ``h``. A head's term needs only the class-token query
row of its attention: ``z_h[CLS] @ W_O[:, h]^T`` plus a 1/H share of the out-proj bias, mapped
through ``ln_post`` with the image's own std frozen (which makes it linear), ``@ proj``, and divided
by the norm of the embedding. ``mlps`` holds each analysed layer's MLP output at the class token and
``rest`` everything else (the patch embedding and all earlier layers, plus ``ln_post``'s bias).

Two conventions split ``ln_post``'s mean and bias among the terms; both sum to the same total:

- ``"centred"`` (default): each term is centred by its own mean over features and ``ln_post``'s
  bias goes to ``rest``. This applies the same linear map to every term, so a head's term depends
  only on that head (and the image's std and norm) -- the natural direct effect.
- ``"textspan"``: the convention of TextSpan's reference code (Gandelsman et al., 2024): the
  global mean and the bias are split equally among the 2L+1 layer-level terms (embedding, each
  attention, each MLP), a layer's attention share split equally among its heads.

open_clip's blocks use ``nn.MultiheadAttention``, whose internals cannot be hooked, so the analysed
layers are re-run here from ``in_proj_weight``/``out_proj`` (same weights, same result).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import weakref
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccs.cache import CacheCorruptError, CacheWarning  # noqa: F401  (re-exported for callers)

CONVENTIONS = ("centred", "textspan")
FORMAT = 2  # bump when the stored arrays or meta.json change meaning (rebuilds cached folders)
# 2: meta.json holds CRC-32 checksums of the arrays, verified whenever a folder is reused
ARRAYS = ("heads", "mlps", "rest", "norms")


class DecompositionError(TypeError):
    """A model whose image embedding this module cannot decompose exactly."""


@dataclass
class Components:
    """Per-image terms of the normalised embedding (fp32 tensors): see the module docstring."""

    heads: torch.Tensor  # [B, K, H, D]
    mlps: torch.Tensor  # [B, K, D]
    rest: torch.Tensor  # [B, D]
    norms: torch.Tensor  # [B] norm of the unnormalised embedding

    def total(self) -> torch.Tensor:
        """The sum of all terms: the normalised image embedding [B, D]."""
        return self.rest + self.mlps.sum(1) + self.heads.sum((1, 2))


# ---------------------------------------------------------------------------------------------
# Checking the architecture


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The vision tower's residual blocks, or a DecompositionError saying why it cannot be done."""
    from open_clip.transformer import Attention, CustomResidualAttentionBlock, ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", model)
    if not isinstance(visual, VisionTransformer):
        raise DecompositionError(
            f"Cannot decompose a {type(visual).__name__} image tower: only open_clip "
            "VisionTransformer towers (ViT-*) decompose into attention heads."
        )
    if visual.attn_pool is not None:
        raise DecompositionError(
            "Cannot decompose a ViT with attentional pooling (e.g. CoCa): its embedding is not a "
            "sum of per-head class-token terms."
        )
    if visual.pool_type != "tok":
        raise DecompositionError(
            f"Cannot decompose a ViT with pool_type={visual.pool_type!r}: the class-token-only "
            "decomposition needs class-token pooling ('tok')."
        )
    if visual.proj is None:
        raise DecompositionError("The vision tower has no output projection (proj is None).")
    for i, blk in enumerate(visual.transformer.resblocks):
        if isinstance(blk, ResidualAttentionBlock):
            if hasattr(blk, "ln_1_kv") or not blk.attn._qkv_same_embed_dim:
                raise DecompositionError(f"Block {i} is a cross-attention block.")
        elif isinstance(blk, CustomResidualAttentionBlock):
            a = blk.attn
            if (
                not isinstance(a, Attention)
                or a.logit_scale is not None
                or not isinstance(a.ln_inner, nn.Identity)
                or not isinstance(blk.ln_attn, nn.Identity)
            ):
                raise DecompositionError(
                    f"Block {i} normalises after mixing its heads (scale_attn / inner norm / "
                    "scaled cosine attention); its heads cannot be separated exactly."
                )
        else:
            raise DecompositionError(f"Block {i} is a {type(blk).__name__}, not an open_clip residual attention block.")
    return visual.transformer.resblocks


def check(model: nn.Module) -> None:
    """Raise a DecompositionError if `model` cannot be decomposed exactly."""
    _blocks(model)


# ---------------------------------------------------------------------------------------------
# One batch


def _attention(blk: nn.Module, x: torch.Tensor, cls_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-run a block's attention: (output for the queried tokens [B,T',W], head outputs z [B,H,dh]
    at the class token, before the out-projection)."""
    a = blk.attn
    h = blk.ln_1(x)
    B, T, W = h.shape
    if isinstance(a, nn.MultiheadAttention):
        H, ln_q, ln_k, head_scale = a.num_heads, None, None, None
    else:
        H, ln_q, ln_k, head_scale = a.num_heads, a.ln_q, a.ln_k, a.head_scale
    q, k, v = F.linear(h, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)
    if cls_only:  # nothing after the last layer needs the patch tokens
        q = q[:, :1]
    split = lambda t: t.reshape(B, t.shape[1], H, W // H).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    if ln_q is not None:
        q, k = ln_q(q), ln_k(k)
    z = F.scaled_dot_product_attention(q, k, v)  # [B, H, T', dh]
    if head_scale is not None:
        z = z * head_scale
    out = a.out_proj(z.transpose(1, 2).reshape(B, z.shape[2], W))
    return out, z[:, :, 0]


def _head_terms(blk: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Each head's class-token output in the residual stream [B, H, W], with a 1/H bias share and
    the block's layer scale (so that the terms sum to the block's attention output)."""
    lin = blk.attn.out_proj
    W, H = lin.weight.shape[0], z.shape[1]
    terms = torch.einsum("bhd,whd->bhw", z, lin.weight.view(W, H, -1))
    if lin.bias is not None:
        terms = terms + lin.bias / H
    return blk.ls_1(terms)


@torch.no_grad()
def components(model: nn.Module, images: torch.Tensor, layers: int = 4, convention: str = "centred") -> Components:
    """Decompose the embeddings of a batch of preprocessed images [B, 3, S, S] (fp32 results)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    blocks = _blocks(model)
    visual = getattr(model, "visual", model)
    L = len(blocks)
    if not 1 <= layers <= L:
        raise ValueError(f"layers must be in 1..{L}, not {layers}")
    first = L - layers
    x = visual._embeds(images)
    if not visual.transformer.batch_first:
        x = x.transpose(0, 1)
        for blk in blocks[:first]:
            x = blk(x)
        x = x.transpose(0, 1)
    else:
        for blk in blocks[:first]:
            x = blk(x)
    pre = x[:, 0].float()
    heads, mlps = [], []
    for i, blk in enumerate(blocks[first:]):
        last = i == layers - 1
        out, z = _attention(blk, x, cls_only=last)
        heads.append(_head_terms(blk, z).float())
        x = (x[:, :1] if last else x) + blk.ls_1(out)
        m = blk.ls_2(blk.mlp(blk.ln_2(x)))
        mlps.append(m[:, 0].float())
        x = x + m
    heads, mlps = torch.stack(heads, 1), torch.stack(mlps, 1)  # [B,K,H,W], [B,K,W]

    # ln_post with the image's statistics frozen: a linear map of each term
    ln = visual.ln_post
    y = x[:, 0].float()
    mean = y.mean(-1)
    std = (y.var(-1, unbiased=False) + ln.eps).sqrt()
    gamma, beta = ln.weight.float(), ln.bias.float()
    proj = visual.proj.float()
    norms = (F.layer_norm(y, ln.normalized_shape, gamma, beta, ln.eps) @ proj).norm(dim=-1)
    scale = (1 / (std * norms)).view(-1, 1)

    def mapped(t: torch.Tensor, share: float | torch.Tensor) -> torch.Tensor:
        """Map residual-stream terms [B, ..., W] to the normalised embedding space [B, ..., D]."""
        shape = (-1,) + (1,) * (t.dim() - 1)
        if convention == "centred":
            centred = t - t.mean(-1, keepdim=True)
            return (centred * gamma) @ proj * scale.view(shape)
        centred = t - mean.view(shape) * share
        return (centred * gamma) @ proj * scale.view(shape) + (share * beta) @ proj / norms.view(shape)

    H = heads.shape[2]
    n_terms = 2 * L + 1
    if convention == "centred":
        rest = mapped(pre, 0) + (beta @ proj) / norms.view(-1, 1)
    else:
        rest = mapped(pre, (2 * first + 1) / n_terms)
    return Components(heads=mapped(heads, 1 / (n_terms * H)), mlps=mapped(mlps, 1 / n_terms), rest=rest, norms=norms)


# ---------------------------------------------------------------------------------------------
# Streaming to disk
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
_PROGRESS = ("done", "crc32")  # meta fields that change while streaming; the rest are settings


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


def fingerprint(model: nn.Module) -> str:
    """A hash of a model's weights (for cache keys: a retrained or ablated model gets a new one)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict(keep_vars=True).items():
        h.update(name.encode())
        h.update(_tensor_digest(t))
    return h.hexdigest()


# Hashing a ViT-B's weights takes about half a second, and soft pruning fingerprints the model once per
# condition (a hundred and more per page) while editing only a few out-projections. So each tensor's
# digest is kept while the tensor is alive and unchanged: torch bumps `_version` on every in-place
# write, and the weak reference and storage address tell a new tensor from a freed one's successor.
_DIGESTS: dict[int, tuple] = {}


def _tensor_digest(t: torch.Tensor) -> bytes:
    try:
        key = (t.data_ptr(), t._version, t.dtype, tuple(t.shape), tuple(t.stride()))
    except RuntimeError:  # an inference-mode tensor has no version counter: hashed every time
        key = None
    held = _DIGESTS.get(id(t))
    if key is not None and held is not None and held[0]() is t and held[1] == key:
        return held[2]
    digest = hashlib.blake2b(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy(), digest_size=16).digest()
    if key is not None:
        _DIGESTS[id(t)] = (weakref.ref(t, lambda _, i=id(t): _DIGESTS.pop(i, None)), key, digest)
    return digest


def images_hash(images) -> str:
    """A hash of an image array or tensor (for cache keys)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(np.asarray(images)).view(np.uint8))
    return h.hexdigest()


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
