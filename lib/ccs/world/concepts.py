"""The concept world's vocabulary: the concepts and their values (`VOCAB`), the splits (`SPLITS`),
the world variants (`VARIANTS`, chosen with `use`), and the zero-shot prompt templates and tasks
(`TEMPLATES`, `tasks`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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
VARIANTS = {
    "base": {},
    "rich": {"shape": EXTRA_SHAPES, "scene": EXTRA_SCENES},
    "grey": {},
    "rich-grey": {"shape": EXTRA_SHAPES, "scene": EXTRA_SCENES},
}
# Variants whose scenes are drawn in grey (each scene's own luminance and pattern, no hue), so that no
# scene name also means a colour (grass green, sand yellow). The regime study (book/regime.md) asks
# whether that is why heads that encode colour pick scene lines among their TextSpan texts.
GREY_SCENES = {"grey", "rich-grey"}
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
