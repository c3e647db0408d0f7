"""What the concept world's images show and the batches that hold them: attributes drawn at random
and objects placed (the specs), the images of a split (`sample`), a training batch with sibling groups
(`train_batch`), and clips of moving objects (`clips`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ccs.world.captions import _caption, _words
from ccs.world.concepts import (
    _SHIFTED,
    _SPLIT_ID,
    COLOURS,
    CONCEPTS,
    COUNTS,
    MOTIONS,
    NOVEL_SHAPES,
    POSITIONS,
    SCENES,
    SHAPES,
    SIZES,
    SPLITS,
    TEMPLATES,
    TEXTURES,
    VOCAB,
)
from ccs.world.render import CELL, SIZE, _render


# ----------------------------------------------------------------------------- specs
@dataclass
class WorldBatch:
    """Images with captions and ground-truth attributes (one row per image, value words)."""

    images: torch.Tensor  # uint8 [N, 3, H, W]
    captions: list[str]
    attributes: pd.DataFrame

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class ClipBatch:
    """Short clips of a moving object group, with captions and attributes (incl. motion)."""

    frames: torch.Tensor  # uint8 [N, F, 3, H, W]
    captions: list[str]
    attributes: pd.DataFrame


_LAYOUTS = 3  # arrangements of a group: row, column, diagonal (count 2); triangle variants (3)


def _offsets(count: np.ndarray, radius: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """Object offsets [N, 3, 2] (x, y) from the group centre, centred on their mean."""
    d = 2 * radius + 2.0
    off = np.zeros((len(count), 3, 2), np.float32)
    two = {0: [(-0.5, 0), (0.5, 0)], 1: [(0, -0.5), (0, 0.5)], 2: [(-0.5, -0.5), (0.5, 0.5)]}
    three = {
        0: [(-0.5, 0.43), (0.5, 0.43), (0, -0.43)],
        1: [(-0.5, -0.43), (0.5, -0.43), (0, 0.43)],
        2: [(-0.43, -0.5), (-0.43, 0.5), (0.43, 0)],
    }
    for i in range(len(count)):
        if count[i] == 2:
            off[i, :2] = two[layout[i]]
        elif count[i] == 3:
            off[i] = three[layout[i]]
    n = np.maximum(count, 1)[:, None]
    mean = off.sum(1) / n
    active = np.arange(3)[None] < count[:, None]
    off = (off - mean[:, None]) * active[..., None]
    return off * d[:, None, None]


def _place(sp: dict) -> None:
    """Object centres [N, 3, 2] from the position cell, jitter, count, size and layout.

    The group is clamped into the frame; its centre always stays inside its grid cell (checked)."""
    r = np.array([SIZES[s] for s in np.array(list(SIZES))[sp["size"]]], np.float32)
    off = _offsets(sp["count"] + 1, r, sp["layout"])
    row, col = sp["position"] // 3, sp["position"] % 3
    centre = np.stack([(col + 0.5) * CELL, (row + 0.5) * CELL], 1) + sp["jitter"]
    active = np.arange(3)[None] < (sp["count"] + 1)[:, None]
    lo = np.where(active[..., None], off - r[:, None, None], np.inf).min(1)  # group extent
    hi = np.where(active[..., None], off + r[:, None, None], -np.inf).max(1)
    centre = np.clip(centre, -lo, SIZE - hi)
    sp["centres"] = centre[:, None] + off
    sp["centre"] = centre


def _sample_specs(rng: np.random.Generator, n: int, split: str) -> dict:
    nshapes = len(NOVEL_SHAPES) if split == "novel-shapes" else len(SHAPES)
    sp = {
        "shape": rng.integers(nshapes, size=n) + (len(SHAPES) if split == "novel-shapes" else 0),
        "colour": rng.integers(len(COLOURS), size=n),
        "size": rng.integers(len(SIZES), size=n),
        "texture": rng.integers(len(TEXTURES), size=n),
        "position": rng.integers(len(POSITIONS), size=n),
        "scene": rng.integers(len(SCENES), size=n),
        "count": rng.integers(len(COUNTS), size=n),
        "layout": rng.integers(_LAYOUTS, size=n),
        "jitter": rng.uniform(-3, 3, size=(n, 2)).astype(np.float32),
        "bg": rng.integers(0, 128 - SIZE, size=(n, 2)),
        "flip": rng.random(n) < 0.5,
        "bright": rng.uniform(0.9, 1.1, size=n).astype(np.float32),
        "tint": rng.uniform(-12, 12, size=(n, 3)).astype(np.float32),
        "shade": rng.choice([0.5, 1.6], size=n).astype(np.float32),  # novel-shades only
    }
    _place(sp)
    return sp


def _take(sp: dict, idx: np.ndarray) -> dict:
    return {k: v[idx].copy() for k, v in sp.items()}


def _concat(a: dict, b: dict) -> dict:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


# ----------------------------------------------------------------------------- batches
def _attributes(sp: dict) -> pd.DataFrame:
    return pd.DataFrame([_words(sp, i) for i in range(len(sp["shape"]))], columns=CONCEPTS)


def _rng(seed: int, split: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_ID[split], stream])


def sample(n: int, seed: int, split: str = "test") -> WorldBatch:
    """`n` independent images of a split (see `SPLITS`), deterministic in (n, seed, split)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    # shifted splits draw the same attributes as the test split for a seed (paired comparisons)
    rng = _rng(seed, "test" if split in _SHIFTED else split, 1)
    sp = _sample_specs(rng, n, split)
    images = _render(sp, split, _rng(seed, split, 3))
    caps = [_caption(_words(sp, i), rng) for i in range(n)]
    return WorldBatch(images, caps, _attributes(sp))


def train_batch(
    batch_size: int,
    step: int,
    seed: int = 0,
    sibling_frac: float = 0.5,
    position_share: float = 0.5,
    sibling_weights: dict | None = None,
    sibling_group: int = 2,
    single: float = 0.15,
) -> WorldBatch:
    """The training batch of a step: independent images, and in `sibling_frac` of the batch groups
    of `sibling_group` images that differ in exactly one attribute, each with a different value of
    it (fewer when the concept has fewer values). The attribute is position in `position_share`
    of the groups and one of the other concepts otherwise, or drawn by `sibling_weights`
    {concept: weight} when given; every caption of a group names it, so that contrastive training
    must use every concept, and a group of g gives each member g-1 negatives that only that concept
    tells apart. Deterministic in (batch_size, step, seed, mix); the seed stream never meets
    `sample`'s."""
    rng = np.random.default_rng([int(seed), int(step), 99])
    n_sib = int(batch_size * sibling_frac * (sibling_group - 1) / sibling_group)
    base = _sample_specs(rng, batch_size - n_sib, "train")
    others = [c for c in CONCEPTS if c != "position"]
    # one concept per group, drawn for as many groups as there could be (each has >= 1 sibling);
    # groups of concepts with few values are smaller, and when the independent images run out
    # before the siblings are drawn, the batch is that much smaller than `batch_size`
    if sibling_weights:
        w = np.array([sibling_weights.get(c, 0.0) for c in CONCEPTS], float)
        diff = rng.choice(CONCEPTS, n_sib, p=w / w.sum())
    else:
        diff = np.where(rng.random(n_sib) < position_share, "position", rng.choice(others, n_sib))
    parent, offset, must = [], [], [None] * len(base["shape"])
    for g, c in enumerate(diff[: len(must)]):
        k = len(VOCAB[c])
        m = min(sibling_group, k) - 1
        offs = [rng.integers(1, k)] if m == 1 else rng.choice(np.arange(1, k), m, replace=False)
        parent += [g] * m
        offset += list(offs)
        must[g] = c
        if len(parent) >= n_sib:
            break
    parent, offset = np.array(parent[:n_sib], int), np.array(offset[:n_sib], int)
    sib = _take(base, parent)
    for i, (g, o) in enumerate(zip(parent, offset)):
        c = diff[g]
        sib[c][i] = (sib[c][i] + o) % len(VOCAB[c])
    _place(sib)
    sp = _concat(base, sib)
    images = _render(sp, "train", rng)
    must += [diff[g] for g in parent]
    caps = [_caption(_words(sp, i), rng, must=must[i], single=single) for i in range(len(must))]
    return WorldBatch(images, caps, _attributes(sp))


def clips(n: int, seed: int, frames: int = 8, split: str = "test") -> ClipBatch:
    """`n` short clips: an object group moving left/right/up/down by 2 px a frame.

    The attributes hold the group's position at the first frame and its motion."""
    rng = _rng(seed, split, 2)
    sp = _sample_specs(rng, n, split)
    motion = rng.integers(len(MOTIONS), size=n)
    step = np.array([(-2, 0), (2, 0), (0, -2), (0, 2)], np.float32)[motion]
    # start where the whole path stays inside the frame, then recompute the start cell
    travel = step * (frames - 1)
    off = sp["centres"] - sp["centre"][:, None]
    active = np.arange(3)[None] < (sp["count"] + 1)[:, None]
    r = np.array([SIZES[s] for s in np.array(list(SIZES))[sp["size"]]], np.float32)[:, None]
    lo = np.where(active[..., None], off - r[..., None], np.inf).min(1)
    hi = np.where(active[..., None], off + r[..., None], -np.inf).max(1)
    start = np.clip(sp["centre"], -lo - np.minimum(travel, 0), SIZE - hi - np.maximum(travel, 0))
    cell = np.clip((start // CELL).astype(int), 0, 2)
    sp["position"] = cell[:, 1] * 3 + cell[:, 0]
    out = []
    for f in range(frames):
        c = start + step * f
        out.append(_render(sp, split, rng, centres=c[:, None] + off))
    attrs = _attributes(sp)
    attrs["motion"] = [MOTIONS[m] for m in motion]
    caps = [
        _caption(_words(sp, i), rng, must="shape", motion=MOTIONS[motion[i]])
        if rng.random() > 0.1
        else TEMPLATES["motion"][0].format(MOTIONS[motion[i]])
        for i in range(n)
    ]
    return ClipBatch(torch.stack(out, 1), caps, attrs)
