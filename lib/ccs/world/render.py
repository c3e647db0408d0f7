"""The concept world's pixels: the scene textures, the shapes and their stripes and dots, an image
rendered from its specs (`_render`), and a grid of images (`grid`).

Rendering is vectorised in torch (shapes are implicit functions rendered at 2x and box-filtered),
deterministic for a given seed, and returns uint8 tensors [N, 3, 48, 48].
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from ccs.world.concepts import _ALL_SHAPES, _BASE, COLOURS, EXTRA_SCENES, GREY_SCENES, SCENES, SIZES, current

SIZE = 48  # image side in pixels
CELL = SIZE / 3
SS = 2  # supersampling factor of the object masks
WIN = 18  # side of the window an object is drawn in (> largest diameter)


# ----------------------------------------------------------------------------- scenes
def _scene_textures() -> torch.Tensor:
    """One 128x128 texture per scene of the current variant; images take random crops of them."""
    return _textures(tuple(SCENES), current() in GREY_SCENES)


@cache
def _textures(scenes: tuple[str, ...], grey: bool = False) -> torch.Tensor:
    """The textures of `scenes`: the base scenes from one fixed seed, in order (so the base world's
    images never change), the extra scenes from another. `grey`: each scene's base colour replaced by
    its luminance (ITU-R 601), the pattern kept."""
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
        if grey:
            base = (np.dot((0.299, 0.587, 0.114), base),) * 3
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
