"""The concept world's captions: varied captions naming some of an image's attributes (`_caption`,
for training and test images), the caption naming all of them (`full_caption`), and the attributes a
caption names (`parse_caption`)."""

from __future__ import annotations

import re

import numpy as np

from ccs.world.concepts import _ALL_SHAPES, COLOURS, CONCEPTS, COUNTS, POSITIONS, SCENES, SIZES, TEMPLATES, TEXTURES, VOCAB

_PLURAL = {"cross": "crosses"}
_PREFIXES = ["", "", "a photo of ", "an image of ", "a picture of ", "there is "]
# probability that a full caption names each concept (shape almost always: prototype lesson)
_P_NAME = {"shape": 0.95, "colour": 0.8, "size": 0.75, "texture": 0.75, "position": 0.8, "scene": 0.7, "count": 0.75}


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
