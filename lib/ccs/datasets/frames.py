"""A video's frames: decoded with PyAV at the centres of equal segments, resized and centre-cropped
on tensors (`decode_frames`), and cached on disk, written atomically (`cached_frames`)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ccs.datasets.registry import DatasetError

_FRAMES_FORMAT = 1  # bump when the frame sampling or resizing changes: old cache entries are then unused


def _resize_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> uint8 [..., 3, size, size]: shorter side to `size` (bicubic,
    antialiased), then the centre crop (on tensors: video frames)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if x.shape[-2:] != (size, size):
        x = TF.resize(x, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x.contiguous()


def _corrupt(path: Path, why: str) -> DatasetError:
    return DatasetError(
        f"Cannot decode the video {path} ({why}); the file is damaged or not a video: download the dataset's videos again."
    )


def decode_frames(path: Path, frames: int, size: int) -> np.ndarray:
    """`frames` frames of a video, uint8 [frames, 3, size, size]: the frames at the centres of
    `frames` equal segments of its frame sequence, resized and centre-cropped (no caching)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _corrupt(path, "no video stream")
            stream = container.streams.video[0]
            total = int(stream.frames or 0)
            if total <= 0:  # no count in the header: count the packets (cheap: no decoding)
                total = sum(1 for p in container.demux(stream) if p.size)
                container.seek(0)
        if total <= 0:
            raise _corrupt(path, "no frames")
        wanted = np.minimum(((np.arange(frames) + 0.5) * total / frames).astype(int), total - 1).tolist()

        def convert(frame) -> torch.Tensor:
            return _resize_crop(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1), size)

        picked: dict[int, torch.Tensor] = {}
        last, last_i = None, -1
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            targets = set(wanted)
            for last_i, last in enumerate(container.decode(stream)):
                if last_i in targets:
                    picked[last_i] = convert(last)
                if last_i >= wanted[-1]:
                    break
            if last is None:
                raise _corrupt(path, "no frame could be decoded")
            if last_i not in picked:  # fewer frames than the header said: the last one stands in
                picked[last_i] = convert(last)
    except DatasetError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError, RuntimeError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    got = sorted(picked)
    return torch.stack([picked[max((k for k in got if k <= w), default=got[0])] for w in wanted]).numpy()


def _frames_key(path: Path, frames: int, size: int) -> str:
    st = path.stat()
    text = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, frames, size, _FRAMES_FORMAT])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_frames(path: Path, frames: int, size: int, folder: str = "video") -> np.ndarray:
    """`decode_frames`, cached on disk under ``cache_dir("frames", folder)`` by the file's path, size
    and mtime, the frame count and the size; written atomically. A damaged entry is decoded again."""
    from ccs.cache import CacheWarning, cache_dir

    path = Path(path)
    target = cache_dir("frames", folder) / f"{_frames_key(path, frames, size)}.npy"
    if target.is_file():
        try:
            out = np.load(target, allow_pickle=False)
            if out.shape == (frames, 3, size, size) and out.dtype == np.uint8:
                return out
        except (OSError, ValueError, EOFError):
            pass
        warnings.warn(f"damaged frame cache entry {target} for {path}: decoding again", CacheWarning, stacklevel=2)
    out = decode_frames(path, frames, size)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, out, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
