"""The concept-world pool (`world`): generated from the concept world's vocabularies
(``ccs.world.VOCAB``) in varied phrasings (`PHRASINGS`), plus descriptions of things the world does
not contain (`ccs.pools.distractors`). Every line keeps the concept (and value) that produced it: the
ground truth for scoring head labels later. Lines are single-concept by default: multi-attribute lines
("a red heart in the bottom left on snow") have large projections on many heads at once and win almost
every greedy pick.
"""

from __future__ import annotations

import re

import numpy as np

from ccs.pools.distractors import ABSENT
from ccs.pools.pool import Pool

# Phrasings per concept; "{}" is the value word. A concept missing here gets GENERIC.
PHRASINGS = {
    "shape": [
        "{}",
        "a {}",
        "a {} shape",
        "the shape of a {}",
        "a photo of a {}",
        "a drawing of a {}",
        "a simple {}",
        "an outline of a {}",
        "a {} symbol",
        "a {} icon",
        "a {}-shaped object",
        "a {} figure",
        "an image of a {}",
        "a flat {}",
        "something shaped like a {}",
    ],
    "colour": [
        "{}",
        "the colour {}",
        "a {} object",
        "something {}",
        "a {} shape",
        "mostly {}",
        "painted {}",
        "a photo of something {}",
        "bright {}",
        "a {} thing",
        "{} tones",
        "an image with {} in it",
        "a {} figure",
        "{} paint",
        "coloured {}",
    ],
    "size": [
        "{}",
        "a {} object",
        "something {}",
        "a {} shape",
        "{} in size",
        "a {} thing",
        "an object that is {}",
        "a {} figure",
        "a photo of something {}",
        "a {} item",
        "very {}",
        "{}-sized",
        "a {} version",
    ],
    "texture": [
        "{}",
        "a {} pattern",
        "a {} texture",
        "a {} surface",
        "something {}",
        "a {} object",
        "covered in a {} pattern",
        "a {} design",
        "a photo of a {} pattern",
        "{} fabric",
        "a {} shape",
        "a {} print",
        "with a {} finish",
    ],
    "position": [
        "{}",
        "in the {}",
        "an object in the {}",
        "something at the {}",
        "placed at the {}",
        "located at the {} of the image",
        "the {} of the frame",
        "positioned {}",
        "a shape in the {}",
        "a photo with something in the {}",
        "off to the {}",
        "sitting in the {}",
    ],
    "scene": [
        "{}",
        "a {} background",
        "on {}",
        "a scene with {}",
        "against a {} backdrop",
        "set on {}",
        "a photo taken on {}",
        "a {} setting",
        "{} in the background",
        "a picture of {}",
        "a {} surface",
        "surrounded by {}",
        "a {} landscape",
    ],
    "count": [
        "{} objects",
        "{} shapes",
        "a group of {}",
        "exactly {} things",
        "{} items",
        "{} of them",
        "a picture of {} objects",
        "{} figures",
        "a set of {}",
        "{} copies",
        "there are {}",
    ],
    "motion": [
        "moving {}",
        "an object moving {}",
        "heading {}",
        "drifting {}",
        "sliding {}",
        "travelling {}",
        "a shape going {}",
        "motion {}",
    ],
}
SINGULAR = {
    "objects": "object",
    "shapes": "shape",
    "things": "thing",
    "items": "item",
    "figures": "figure",
    "copies": "copy",
    "there are": "there is",
    "a group of": "just",
}
GENERIC = ["{}", "a {} thing", "something {}", "a photo of something {}", "an image showing {}"]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def world(vocab: dict[str, list[str]] | None = None, *, absent: bool = True, combos: int = 0, seed: int = 0) -> Pool:
    """The concept-world pool: every value of every concept of `vocab` (default: the world's) in
    each phrasing of its concept, then (if `absent`) descriptions of things outside the world
    (lines that mention a world value are left out, so their ground truth stays clean), then
    `combos` multi-attribute lines (concept "a+b"; none by default, see the module docstring)."""
    if vocab is None:
        from ccs.world import VOCAB as vocab
    rows, seen = [], set()

    def add(text, concept, value, in_world):
        if text not in seen:
            seen.add(text)
            rows.append((text, concept, value, in_world))

    for concept, values in vocab.items():
        for value in values:
            for p in PHRASINGS.get(concept, GENERIC):
                if value in ("one", "1"):  # "one objects" -> "one object"
                    for plural, singular in SINGULAR.items():
                        p = re.sub(rf"\b{plural}\b", singular, p)
                add(p.format(value), concept, value, True)
    if absent:
        world_words = set().union(*(_words(v) for vs in vocab.values() for v in vs))
        for category, (items, phrasings) in ABSENT.items():
            for item in items:
                for p in phrasings:
                    text = p.format(item)
                    if not (_words(text) & world_words):
                        add(text, category, item, False)
    if combos:
        rng = np.random.default_rng(seed)
        concepts = [c for c in vocab if c in ("shape", "colour", "size", "texture", "scene", "position")] or list(vocab)
        while sum(r[3] and "+" in r[1] for r in rows) < combos:
            cs = sorted(
                rng.choice(concepts, size=min(len(concepts), rng.integers(2, 4)), replace=False),
                key=["size", "colour", "texture", "shape", "position", "scene"].index,
            )
            vals = {c: vocab[c][rng.integers(len(vocab[c]))] for c in cs}
            text = _combo(vals)
            add(text, "+".join(cs), "+".join(vals[c] for c in cs), True)
    text, concept, value, in_world = zip(*rows)
    return Pool("world" + (f"+{combos}" if combos else ""), text, concept, value, in_world)


def _combo(vals: dict[str, str]) -> str:
    noun = f"{vals['shape']}" if "shape" in vals else "object"
    adj = " ".join(vals[c] for c in ("size", "colour", "texture") if c in vals)
    text = f"{adj} {noun}".strip()
    text = ("an " if text[0] in "aeiou" else "a ") + text
    if "position" in vals:
        text += f" in the {vals['position']}"
    if "scene" in vals:
        text += f" on {vals['scene']}"
    return text
