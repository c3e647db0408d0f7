"""Hashes for cache keys: of a model's weights (`fingerprint`; each tensor's digest is kept while
the tensor is alive and unchanged) and of an image array or tensor (`images_hash`)."""

from __future__ import annotations

import hashlib
import weakref

import numpy as np
import torch
from torch import nn


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


# The pages key every pruned embedding by its images (1,000 images, or a video set's frames flattened:
# 7 to 60 ms a hash, a hundred and more times a page), so a CPU tensor's hash is kept like a weight's
# digest, by the tensor it views (`_base`, alive while the page holds its images; the flattened frames
# are a new view at each call) and where in it, while the version counter, shared by a tensor and its
# views, says nothing was written.
_IMAGES: dict[tuple, tuple] = {}


def images_hash(images) -> str:
    """A hash of an image array or tensor (for cache keys); a tensor's is the same as its array's."""
    try:
        where = (images.data_ptr(), images.dtype, tuple(images.shape), tuple(images.stride()), images._version)
        base = images if images._base is None else images._base
    except (AttributeError, RuntimeError):  # an array, or an inference-mode tensor (no version counter)
        return _images_hash(images)
    if images.device.type != "cpu":
        return _images_hash(images)
    key = (id(base), *where)
    held = _IMAGES.get(key)
    if held is not None and held[0]() is base:
        return held[1]
    value = _images_hash(images)
    _IMAGES[key] = (weakref.ref(base, lambda _, k=key: _IMAGES.pop(k, None)), value)
    return value


def _images_hash(images) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)).view(np.uint8))
    return h.hexdigest()
