"""The concept world: generated images, captions and clips whose concepts are known.

Every image shows a group of 1-3 identical objects on a textured background scene. Its concepts:

- ``shape`` (8 trained shapes), ``colour`` (8), ``size`` (large / small, radius 7 / 5 px),
  ``texture`` (plain / striped / dotted, in a darker shade of the colour), ``position`` (the 3x3 grid cell of
  the group's centre, named "top left" ... "center" ... "bottom right"), ``scene`` (8 textured
  backgrounds: the world's stand-in for the paper's "location", where a photo was taken),
  ``count`` (one / two / three), and for clips ``motion`` (left / right / up / down).

Rendering is vectorised in torch (shapes are implicit functions rendered at 2x and box-filtered),
deterministic for a given seed, and returns uint8 tensors [N, 3, 48, 48].

Splits (``SPLITS``):

- ``train``: the training distribution (training draws its batches from `train_batch`, seeded by
  step, with "sibling" pairs that differ in one attribute);
- ``test``: the same distribution from a seed stream never used in training;
- ``sketch``: objects drawn as outlines only (texture is then invisible) -- shifted;
- ``noisy``: blurred and with Gaussian pixel noise -- shifted;
- ``novel-shades``: colours as lighter or darker shades never seen in training -- shifted;
- ``novel-shapes``: held-out shapes (``NOVEL_SHAPES``) never seen in training -- out of distribution.

Variants (``VARIANTS``, chosen per process with `use`): ``base`` is the world above; ``rich`` doubles
the two concepts whose values are categorical rather than points on a line or a plane (16 shapes,
16 scenes), for the regime study (ccs.regime): a head can only give five consistent TextSpan texts
about a concept that offers five distinct, well-separated directions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

SIZE = 48  # image side in pixels
CELL = SIZE / 3
SS = 2  # supersampling factor of the object masks
WIN = 18  # side of the window an object is drawn in (> largest diameter)

SHAPES = ["circle", "square", "triangle", "diamond", "cross", "star", "heart", "bar"]
EXTRA_SHAPES = ["pentagon", "hexagon", "oval", "dome", "trapezoid", "chevron", "hourglass", "tee"]
NOVEL_SHAPES = ["ring", "crescent", "arrow"]
COLOURS = {
    "red": (220, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 180, 60),
    "cyan": (30, 205, 215),
    "blue": (40, 70, 225),
    "purple": (145, 50, 205),
    "pink": (250, 125, 195),
}
SIZES = {"large": 7.0, "small": 5.0}  # radius in pixels
TEXTURES = ["plain", "striped", "dotted"]
POSITIONS = [
    "top left",
    "top center",
    "top right",
    "middle left",
    "center",
    "middle right",
    "bottom left",
    "bottom center",
    "bottom right",
]
SCENES = ["grass", "sand", "water", "snow", "brick", "night", "wood", "stone"]
EXTRA_SCENES = ["leaves", "clouds", "tiles", "gravel", "lava", "carpet", "ice", "rust"]
_BASE = {"shape": list(SHAPES), "scene": list(SCENES)}
VARIANTS = {"base": {}, "rich": {"shape": EXTRA_SHAPES, "scene": EXTRA_SCENES}}
COUNTS = ["one", "two", "three"]
MOTIONS = ["left", "right", "up", "down"]

CONCEPTS = ["shape", "colour", "size", "texture", "position", "scene", "count"]
CLIP_CONCEPTS = CONCEPTS + ["motion"]
VOCAB: dict[str, list[str]] = {
    "shape": SHAPES,
    "colour": list(COLOURS),
    "size": list(SIZES),
    "texture": TEXTURES,
    "position": POSITIONS,
    "scene": SCENES,
    "count": COUNTS,
    "motion": MOTIONS,
}
SPLITS = {
    "train": "training distribution",
    "test": "training distribution, fresh seeds",
    "sketch": "shifted: outline-only objects (texture invisible)",
    "noisy": "shifted: blur and Gaussian pixel noise",
    "novel-shades": "shifted: lighter or darker colour shades never seen in training",
    "novel-shapes": "out of distribution: held-out shapes " + ", ".join(NOVEL_SHAPES),
}
_SPLIT_ID = {s: i for i, s in enumerate(SPLITS)}
_SHIFTED = ("sketch", "noisy", "novel-shades")
_ALL_SHAPES = SHAPES + NOVEL_SHAPES
_current = ["base"]


def use(variant: str) -> None:
    """Make `variant` (see `VARIANTS`) this process's world: the vocabularies are changed in place,
    so every module that reads them (pools, tasks, captions) follows. A model is trained and analysed
    in one variant; ccs.regime and the training command call this before anything else."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown world variant {variant!r}; known: {', '.join(VARIANTS)}")
    extra = VARIANTS[variant]
    for concept, values in (("shape", SHAPES), ("scene", SCENES)):
        values[:] = _BASE[concept] + list(extra.get(concept, []))
    _ALL_SHAPES[:] = SHAPES + NOVEL_SHAPES
    _current[0] = variant


def current() -> str:
    """The world variant this process uses."""
    return _current[0]


# Zero-shot prompt templates per concept; training captions use them too ("single-concept"
# captions), so the prompts are in distribution.
TEMPLATES: dict[str, list[str]] = {
    "shape": ["a photo of a {}.", "a {}.", "a drawing of a {}.", "a picture of a {}."],
    "colour": ["a photo of a {} object.", "something {}.", "a {} shape.", "a {} thing."],
    "size": ["a photo of a {} object.", "something {}.", "a {} shape.", "a {} thing."],
    "texture": ["a photo of a {} object.", "something {}.", "a {} shape.", "a {} thing."],
    "position": ["an object in the {}.", "something at the {}.", "a shape in the {} of the picture.", "in the {}."],
    "scene": ["a photo on a {} background.", "a {} background.", "something in front of {}.", "an object on {}."],
    "count": ["{} objects.", "a photo of {} shapes.", "{} things.", "a picture of {} objects."],
    "motion": ["something moving {}.", "an object moving {}.", "a shape that moves {}.", "a video of a shape moving {}."],
}
_PLURAL = {"cross": "crosses"}
_PREFIXES = ["", "", "a photo of ", "an image of ", "a picture of ", "there is "]
# probability that a full caption names each concept (shape almost always: prototype lesson)
_P_NAME = {"shape": 0.95, "colour": 0.8, "size": 0.75, "texture": 0.75, "position": 0.8, "scene": 0.7, "count": 0.75}


# ----------------------------------------------------------------------------- scenes
def _scene_textures() -> torch.Tensor:
    """One 128x128 texture per scene of the current variant; images take random crops of them."""
    return _textures(tuple(SCENES))


@cache
def _textures(scenes: tuple[str, ...]) -> torch.Tensor:
    """The textures of `scenes`: the base scenes from one fixed seed, in order (so the base world's
    images never change), the extra scenes from another."""
    rng = np.random.default_rng(12345)
    n = 128
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)

    def smooth(a, k):
        a = torch.from_numpy(a.astype(np.float32))[None, None]
        return F.avg_pool2d(F.pad(a, (k // 2,) * 4, mode="circular"), k, 1)[0, 0].numpy()

    def noise(k=1):
        return smooth(rng.standard_normal((n, n)), k) if k > 1 else rng.standard_normal((n, n))

    out = []
    for s in [s for s in _BASE["scene"] if s in scenes] + [s for s in scenes if s not in _BASE["scene"]]:
        if s == EXTRA_SCENES[0]:
            rng = np.random.default_rng(54321)
        if s == "grass":  # vertical blades: noise smeared along y
            blades = np.cumsum(rng.standard_normal((n, n)), 0) / 4
            base, d = (85, 130, 65), 14 * np.tanh(blades - blades.mean(0)) + 5 * noise()
        elif s == "sand":
            base, d = (205, 180, 125), 12 * np.sin(y / 2.5 + 2 * np.sin(x / 9)) + 4 * noise()
        elif s == "water":
            base, d = (45, 90, 155), 16 * np.sin(y / 1.6 + 1.5 * np.sin(x / 6)) + 4 * noise()
        elif s == "snow":
            base, d = (228, 232, 240), -45 * (rng.random((n, n)) < 0.04) + 3 * noise()
        elif s == "brick":
            row = (y // 8).astype(int)
            mortar = (y % 8 < 1) | (((x + 6 * (row % 2)) % 12) < 1)
            base, d = (160, 80, 60), 55 * mortar + 6 * noise(3)
        elif s == "night":
            base, d = (20, 24, 50), 170 * (rng.random((n, n)) < 0.03) + 3 * noise()
        elif s == "wood":
            base, d = (135, 95, 60), 16 * np.sin(x / 1.5 + 3 * smooth(rng.standard_normal((n, n)), 9) * 8) + 3 * noise()
        elif s == "stone":
            base, d = (125, 125, 128), 40 * noise(7) + 6 * noise()
        elif s == "leaves":  # dark green blotches
            base, d = (45, 95, 40), 45 * np.tanh(2 * noise(5)) + 6 * noise()
        elif s == "clouds":  # soft white on pale blue
            base, d = (150, 185, 230), 60 * np.clip(3 * noise(11), 0, None) + 3 * noise()
        elif s == "tiles":  # 10 px checkerboard
            base, d = (190, 190, 200), 45 * (((x // 10) + (y // 10)) % 2) - 40 * ((x % 10 < 1) | (y % 10 < 1))
        elif s == "gravel":  # coarse grey-brown grains
            base, d = (140, 125, 110), 45 * noise(3) + 15 * noise()
        elif s == "lava":  # glowing veins on dark red
            base, d = (110, 25, 10), 120 * np.exp(-8 * smooth(rng.standard_normal((n, n)), 9) ** 2 * 40) + 5 * noise()
        elif s == "carpet":  # diagonal stripes, purple-red
            base, d = (120, 35, 80), 30 * np.sign(np.sin((x + y) / 2.2)) + 5 * noise()
        elif s == "ice":  # pale cyan with thin cracks
            base, d = (195, 230, 245), -70 * (np.abs(np.sin(x / 7 + 2 * np.sin(y / 11))) < 0.06) + 4 * noise()
        elif s == "rust":  # orange-brown stains
            base, d = (150, 75, 35), 35 * noise(5) + 12 * noise()
        img = np.array(base, np.float32)[:, None, None] + np.asarray(d, np.float32)[None]
        out.append(np.clip(img, 0, 255))
    return torch.from_numpy(np.stack(out)).float()  # [S, 3, 128, 128]


# ----------------------------------------------------------------------------- shapes
def _shape_mask(kind: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-test of a unit-radius shape at normalised coordinates (v points down)."""
    if kind == "circle":
        return u * u + v * v <= 1
    if kind == "square":
        return torch.maximum(u.abs(), v.abs()) <= 0.85
    if kind == "triangle":
        return (v <= 0.8) & (v >= -1.0 + 2.0 * u.abs())
    if kind == "diamond":
        return u.abs() + v.abs() <= 1.05
    if kind == "cross":
        return ((u.abs() <= 0.34) & (v.abs() <= 1)) | ((v.abs() <= 0.34) & (u.abs() <= 1))
    if kind == "star":
        r, th = torch.sqrt(u * u + v * v), torch.atan2(v, u) + np.pi / 2
        return r <= 0.5 + 0.5 * torch.cos(5 * th).clamp(min=0) ** 2
    if kind == "heart":
        x, y = u * 1.15, -v * 1.15 + 0.25
        return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0
    if kind == "bar":
        return (u.abs() <= 1) & (v.abs() <= 0.42)
    if kind in ("pentagon", "hexagon"):
        k = 5 if kind == "pentagon" else 6
        th = torch.atan2(u, -v)  # pointing up
        sector = 2 * np.pi / k
        return torch.sqrt(u * u + v * v) * torch.cos((th % sector) - sector / 2) <= np.cos(np.pi / k)
    if kind == "oval":
        return (u / 1.0) ** 2 + (v / 0.62) ** 2 <= 1
    if kind == "dome":  # a half disc on its flat side
        return (u * u + (v - 0.45) ** 2 <= 1.1) & (v <= 0.45)
    if kind == "trapezoid":
        return (v.abs() <= 0.7) & (u.abs() <= 0.45 + 0.5 * (v + 0.7) / 1.4)
    if kind == "chevron":  # a V pointing up, 0.6 thick
        top = -0.85 + 0.9 * u.abs()
        return (u.abs() <= 1) & (v >= top) & (v <= top + 0.6)
    if kind == "hourglass":
        return (v.abs() <= 0.9) & (u.abs() <= 0.15 + 0.85 * v.abs())
    if kind == "tee":
        return ((u.abs() <= 1) & (v >= -0.9) & (v <= -0.42)) | ((u.abs() <= 0.3) & (v.abs() <= 0.9))
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= 0.3)
    if kind == "crescent":
        return (u * u + v * v <= 1) & ((u - 0.45) ** 2 + (v + 0.1) ** 2 >= 0.55)
    if kind == "arrow":
        head = (u >= 0.05) & (u <= 1) & (v.abs() <= 1 - u)
        return head | ((u >= -1) & (u < 0.1) & (v.abs() <= 0.3))
    raise ValueError(kind)


def _pattern(texture: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Where a texture is dark (0/1), at offsets (dx, dy) px from the object's centre.

    Striped: 2 px horizontal stripes (half the surface dark). Dotted: dots of radius 1.15 px on a
    4 px grid (a quarter dark). Their first version, 2 px stripes against 2 px checks, had the same
    dark share and differed only in the phase-dependent fine structure inside a 16 px patch token:
    ccs-tiny told them apart at chance, and a linear probe on its patch tokens read stripes against
    checks at 0.51-0.55 but stripes against these dots at 0.85 (benchmarks/texture_probe.py)."""
    stripes = torch.floor(dy / 2 + 0.25) % 2
    gx, gy = dx / 4 - torch.round(dx / 4), dy / 4 - torch.round(dy / 4)
    dots = ((gx * gx + gy * gy) * 16 <= 1.3).float()
    return torch.where(texture == 1, stripes, torch.where(texture == 2, dots, 0.0))


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


# ----------------------------------------------------------------------------- rendering
def _render(sp: dict, split: str, rng: np.random.Generator, centres=None) -> torch.Tensor:
    """Render specs to uint8 [N, 3, SIZE, SIZE]. `centres` overrides the object centres (clips)."""
    n = len(sp["shape"])
    # background: one gather of a (possibly mirrored) crop of the scene's texture
    tex = _scene_textures()
    i = torch.arange(SIZE)
    flip = torch.from_numpy(sp["flip"])[:, None]
    cols = torch.from_numpy(sp["bg"][:, :1]) + torch.where(flip, SIZE - 1 - i, i)  # [N, W]
    rows = torch.from_numpy(sp["bg"][:, 1:]) + i  # [N, H]
    img = tex[
        torch.from_numpy(sp["scene"])[:, None, None, None],
        torch.arange(3)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    img = img * torch.from_numpy(sp["bright"])[:, None, None, None]

    # object colours: base colour + small tint (train/test); novel-shades: lighter or darker
    col = torch.tensor(list(COLOURS.values()), dtype=torch.float32)[sp["colour"]]
    if split == "novel-shades":
        s = torch.from_numpy(sp["shade"])[:, None]
        col = torch.where(s > 1, col + (255 - col) * 0.55, col * s)
    else:
        col = col + torch.from_numpy(sp["tint"])
    col = col.clamp(0, 255)

    # objects: each drawn in a local window (WIN px, supersampled), then added into a padded canvas
    cen = torch.from_numpy(np.asarray(sp["centres"] if centres is None else centres, np.float32))
    r = torch.tensor([SIZES[k] for k in np.array(list(SIZES))[sp["size"]]])
    count = torch.from_numpy(sp["count"] + 1)
    shapes = np.array(_ALL_SHAPES)[sp["shape"]]
    half = WIN // 2
    alpha = torch.zeros(n, SIZE + WIN, SIZE + WIN)
    dark = torch.zeros(n, SIZE + WIN, SIZE + WIN)
    g = (torch.arange(WIN * SS, dtype=torch.float32) + 0.5) / SS
    for k in range(3):
        on = (count > k).nonzero().flatten()
        if len(on) == 0:
            continue
        c0 = torch.floor(cen[on, k]).long() - half  # window origin (x, y)
        dx = (c0[:, 0, None, None] + g[None, None, :] - cen[on, k, 0, None, None]).expand(-1, WIN * SS, -1)
        dy = (c0[:, 1, None, None] + g[None, :, None] - cen[on, k, 1, None, None]).expand(-1, -1, WIN * SS)
        rr = r[on, None, None]
        m = torch.zeros(len(on), WIN * SS, WIN * SS, dtype=torch.bool)
        son = shapes[on.numpy()]
        for kind in set(son):
            sel = torch.from_numpy(son == kind)
            inside = _shape_mask(kind, dx[sel] / rr[sel], dy[sel] / rr[sel])
            if split == "sketch":  # outline only: shape minus the shape shrunk by ~1.2 px
                ri = (rr[sel] - 1.2).clamp(min=0.5)
                inside = inside & ~_shape_mask(kind, dx[sel] / ri, dy[sel] / ri)
            m[sel] = inside
        # texture: stripes / dots anchored on the object's centre, drawn in a darker shade
        t = torch.from_numpy(sp["texture"][on.numpy()])[:, None, None]
        pat = _pattern(t, dx, dy)
        a = F.avg_pool2d(m.float()[:, None], SS)[:, 0]  # anti-aliased coverage
        d = F.avg_pool2d((m * pat)[:, None].float(), SS)[:, 0]
        ys = (c0[:, 1, None] + half + torch.arange(WIN)).clamp(0, SIZE + WIN - 1)
        xs = (c0[:, 0, None] + half + torch.arange(WIN)).clamp(0, SIZE + WIN - 1)
        idx = (on[:, None, None], ys[:, :, None], xs[:, None, :])
        alpha.index_put_(idx, a, accumulate=True)
        dark.index_put_(idx, d, accumulate=True)
    alpha = alpha[:, half : half + SIZE, half : half + SIZE].clamp(max=1)[:, None]
    dark = dark[:, half : half + SIZE, half : half + SIZE][:, None]
    img = img * (1 - alpha) + col[:, :, None, None] * (alpha - 0.55 * dark)
    if split == "noisy":
        img = F.avg_pool2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), 3, 1)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        img = img + 20 * torch.randn(img.shape, generator=gen)
    return img.round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- captions
def _words(sp: dict, i: int) -> dict[str, str]:
    return {
        "shape": _ALL_SHAPES[sp["shape"][i]],
        "colour": list(COLOURS)[sp["colour"][i]],
        "size": list(SIZES)[sp["size"][i]],
        "texture": TEXTURES[sp["texture"][i]],
        "position": POSITIONS[sp["position"][i]],
        "scene": SCENES[sp["scene"][i]],
        "count": COUNTS[sp["count"][i]],
    }


def _caption(w: dict, rng: np.random.Generator, must: str | None = None, motion: str | None = None, single: float = 0.15) -> str:
    """A caption naming a random subset of the attributes (always `must`, when given); in `single` of
    them one concept alone, in a zero-shot prompt's form."""
    if motion is None and rng.random() < single:  # single-concept caption in the zero-shot prompt form
        c = must or rng.choice(CONCEPTS + ["position"] * 2)  # position more often
        t = TEMPLATES[c][rng.integers(len(TEMPLATES[c]))]
        return t.format(w[c])
    name = {c: rng.random() < p or c == must for c, p in _P_NAME.items()}
    n = COUNTS.index(w["count"]) + 1
    noun = w["shape"] if name["shape"] else rng.choice(["object", "shape", "thing"])
    if n > 1:
        noun = _PLURAL.get(noun, noun + "s")
    if name["count"]:
        det = w["count"] if (n > 1 or rng.random() < 0.5) else "a"
    else:
        det = "a" if n == 1 else "some"
    adj = [
        w[c]
        for c in ("size", "colour", "texture")
        if name[c] and not (c == "texture" and w[c] == "plain" and rng.random() < 0.5 and c != must)
    ]
    if det == "a" and adj and adj[0][0] in "aeiou" or det == "a" and not adj and noun[0] in "aeiou":
        det = "an"
    parts = [" ".join([det, *adj, noun])]
    tail = []
    if name["position"]:
        tail.append(rng.choice(["in the {}", "at the {}", "in the {} of the picture"]).format(w["position"]))
    if motion is not None:
        tail.append(("moving {}" if n == 1 else "moving {}").format(motion))
    if name["scene"]:
        tail.append(rng.choice(["on a {} background", "in front of {}", "on {}"]).format(w["scene"]))
    rng.shuffle(tail)
    prefix = _PREFIXES[rng.integers(len(_PREFIXES))]
    return (prefix + " ".join(parts + tail) + ".").replace("  ", " ")


def full_caption(attrs) -> str:
    """The caption that names every attribute of an image (a dict or a row of `.attributes`), in
    one fixed form: for retrieval, where a caption should single out its image."""
    w = {c: attrs[c] for c in CONCEPTS}
    n = COUNTS.index(w["count"]) + 1
    noun = w["shape"] if n == 1 else _PLURAL.get(w["shape"], w["shape"] + "s")
    tex = "" if w["texture"] == "plain" else w["texture"] + " "
    motion = f" moving {attrs['motion']}" if "motion" in attrs else ""
    return f"{w['count']} {w['size']} {w['colour']} {tex}{noun}{motion} in the {w['position']} on a {w['scene']} background."


_PARSE_PATTERNS = {
    "position": r"\b{}\b",
    "motion": r"\bmov(?:es|ing) {}\b",
    "scene": r"\b{} background\b|\bfront of {}\b|\bon {}\b",
    "shape": r"\b{}(?:e?s)?\b",
    "colour": r"\b{}\b",
    "size": r"\b{}\b",
    "texture": r"\b{}\b",
    "count": r"\b{}\b",
}


def parse_caption(caption: str) -> dict[str, str]:
    """The attributes a caption names (inverse of the caption grammar; for tests and notebooks).

    Phrases are matched longest first and removed, so "top left" is never read as motion "left"."""
    text = caption.lower()
    out = {}
    for c, pat in _PARSE_PATTERNS.items():
        words = _ALL_SHAPES if c == "shape" else VOCAB[c]
        for w in sorted(words, key=len, reverse=True):
            rx = pat.replace("{}", re.escape(w))
            if re.search(rx, text):
                out[c] = w
                text = re.sub(rx, " ", text)
                break
    return out


# ----------------------------------------------------------------------------- public API
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


@dataclass(frozen=True)
class Task:
    """A zero-shot classification task: one concept, its class names and prompt templates."""

    concept: str
    classnames: list[str]
    templates: list[str]

    def labels(self, attributes: pd.DataFrame) -> np.ndarray:
        """Each row's class index (-1 where the value is not one of the class names)."""
        idx = {c: i for i, c in enumerate(self.classnames)}
        return np.array([idx.get(v, -1) for v in attributes[self.concept]], dtype=np.int64)


def tasks(motion: bool = False) -> dict[str, Task]:
    """Zero-shot tasks for every image concept (and motion, for clips, when `motion`)."""
    cs = CLIP_CONCEPTS if motion else CONCEPTS
    return {c: Task(c, list(VOCAB[c]), list(TEMPLATES[c])) for c in cs}


def grid(images: torch.Tensor, nrow: int = 8, scale: int = 3) -> np.ndarray:
    """Tile uint8 images [N, 3, H, W] into one HxWx3 array (for previews and the model card)."""
    n = len(images)
    rows = -(-n // nrow)
    x = F.interpolate(images.float(), scale_factor=scale, mode="nearest").to(torch.uint8)
    h, w = x.shape[-2:]
    out = torch.full((3, rows * (h + 2), nrow * (w + 2)), 255, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        out[:, r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = x[i]
    return out.permute(1, 2, 0).numpy()
