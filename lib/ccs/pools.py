"""Text description pools: the candidate texts TextSpan describes heads with, one per line.

- ``world``: generated from the concept world's vocabularies (``ccs.world.VOCAB``) in varied
  phrasings, plus descriptions of things the world does not contain. Every line keeps the concept
  (and value) that produced it: the ground truth for scoring head labels later. Lines are
  single-concept by default: multi-attribute lines ("a red heart in the bottom left on snow") have
  large projections on many heads at once and win almost every greedy pick.
- any pool file by path (``.txt``: one description per line; ``.tsv``/``.csv``: a ``text`` column
  and optionally ``concept``, ``value``, ``in_world``) or by URL (fetched only with
  ``download=True``, then cached). ``"textspan"`` names TextSpan's 3,498 general image
  descriptions, the pool of the paper for real models.

Text embeddings of a pool are cached on disk per (model weights, pool contents), in an ``.npz`` that
also holds their CRC-32; a downloaded pool file gets a ``.crc32`` sidecar. Both are verified when read:
a damaged file is reported (a ``ccs.cache.CacheWarning`` naming it) and recomputed or, for a
download that may not reach the network, named in an error that says to delete and fetch it again.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TEXTSPAN_URL = "https://raw.githubusercontent.com/yossigandelsman/clip_text_span/main/text_descriptions/google_3498_english.txt"
ALIASES = {"textspan": TEXTSPAN_URL}


class PoolNotAvailableError(FileNotFoundError):
    """A pool that is neither generated nor on this machine."""


@dataclass(frozen=True)
class Pool:
    """Descriptions with, when known, the concept and value each one describes."""

    name: str
    texts: tuple[str, ...]
    concepts: tuple[str, ...] | None = None
    values: tuple[str, ...] | None = None
    in_world: tuple[bool, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def key(self) -> str:
        """A hash of the texts (for cache keys)."""
        return hashlib.blake2b("\n".join(self.texts).encode(), digest_size=8).hexdigest()

    def frame(self) -> pd.DataFrame:
        cols = {"text": self.texts}
        for c in ("concept", "value", "in_world"):
            v = getattr(self, "concepts" if c == "concept" else c + ("s" if c == "value" else ""))
            if v is not None:
                cols[c] = v
        return pd.DataFrame(cols)


# ---------------------------------------------------------------------------------------------
# The concept-world pool

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

# Things the world does not contain (distractors), by category, with their phrasings.
ABSENT = {
    "animal": (
        [
            "dog",
            "cat",
            "horse",
            "bird",
            "elephant",
            "fish",
            "lion",
            "tiger",
            "rabbit",
            "cow",
            "sheep",
            "monkey",
            "bear",
            "giraffe",
            "zebra",
            "owl",
            "frog",
            "snake",
            "butterfly",
            "dolphin",
            "penguin",
            "duck",
        ],
        ["a {}", "a photo of a {}", "a close-up of a {}", "a cute {}", "a wild {}"],
    ),
    "vehicle": (
        [
            "car",
            "bus",
            "bicycle",
            "motorcycle",
            "truck",
            "train",
            "airplane",
            "boat",
            "helicopter",
            "tractor",
            "scooter",
            "taxi",
            "submarine",
            "rocket",
            "van",
        ],
        ["a {}", "a photo of a {}", "a parked {}", "an old {}", "a {} on the road"],
    ),
    "food": (
        [
            "pizza",
            "apple",
            "banana",
            "sandwich",
            "cake",
            "burger",
            "salad",
            "sushi",
            "bread",
            "soup",
            "pasta",
            "ice cream",
            "coffee",
            "cheese",
            "orange juice",
            "cookie",
            "taco",
            "noodles",
            "egg",
            "steak",
        ],
        ["a {}", "a plate of {}", "a photo of {}", "fresh {}", "a bowl of {}"],
    ),
    "person": (
        [
            "woman",
            "man",
            "child",
            "baby",
            "doctor",
            "chef",
            "soldier",
            "dancer",
            "football player",
            "old man",
            "teenager",
            "police officer",
            "farmer",
            "singer",
            "nurse",
        ],
        ["a {}", "a photo of a {}", "a portrait of a {}", "a smiling {}", "a {} walking"],
    ),
    "object": (
        [
            "chair",
            "table",
            "lamp",
            "clock",
            "phone",
            "laptop",
            "book",
            "cup",
            "bottle",
            "umbrella",
            "guitar",
            "piano",
            "key",
            "shoe",
            "hat",
            "backpack",
            "camera",
            "television",
            "sofa",
            "mirror",
            "pencil",
            "scissors",
        ],
        ["a {}", "a photo of a {}", "an old {}", "a {} on a table", "a broken {}"],
    ),
    "building": (
        [
            "house",
            "church",
            "castle",
            "skyscraper",
            "bridge",
            "tower",
            "barn",
            "temple",
            "lighthouse",
            "stadium",
            "factory",
            "hospital",
            "school",
            "museum",
        ],
        ["a {}", "a photo of a {}", "an old {}", "a tall {}", "the front of a {}"],
    ),
    "plant": (
        ["tree", "flower", "rose", "cactus", "sunflower", "palm tree", "mushroom", "fern", "tulip", "bamboo", "oak tree", "vine"],
        ["a {}", "a photo of a {}", "a blooming {}", "a potted {}", "a wild {}"],
    ),
    "emotion": (
        [
            "happiness",
            "sadness",
            "anger",
            "fear",
            "surprise",
            "calm",
            "love",
            "boredom",
            "excitement",
            "loneliness",
            "joy",
            "anxiety",
        ],
        ["{}", "a feeling of {}", "an expression of {}", "a face showing {}", "a photo that evokes {}"],
    ),
    "art style": (
        [
            "watercolor painting",
            "oil painting",
            "pencil sketch",
            "cartoon",
            "comic strip",
            "mosaic",
            "graffiti",
            "pixel art",
            "engraving",
            "sculpture",
            "collage",
            "charcoal drawing",
            "anime illustration",
            "stained glass window",
        ],
        ["a {}", "a {} of a landscape", "an image in the style of a {}", "a detailed {}", "a modern {}"],
    ),
    "activity": (
        [
            "running",
            "swimming",
            "cooking",
            "reading",
            "dancing",
            "playing football",
            "skiing",
            "surfing",
            "painting",
            "singing",
            "climbing",
            "sleeping",
            "shopping",
            "fishing",
        ],
        ["people {}", "a person {}", "a photo of someone {}", "a child {}", "a group of friends {}"],
    ),
    "text": (
        [
            "a street sign",
            "handwritten text",
            "a newspaper page",
            "a logo",
            "a barcode",
            "a license plate",
            "a menu",
            "a poster with text",
            "a map",
            "a diagram",
            "a chart",
            "a receipt",
        ],
        ["{}", "a photo of {}", "a close-up of {}", "an image containing {}", "a blurry photo of {}"],
    ),
    "weather": (
        ["rain", "fog", "a thunderstorm", "a rainbow", "lightning", "a tornado", "hail", "a heat wave", "wind"],
        ["{}", "a photo of {}", "a city in {}", "a landscape during {}", "a sky with {}"],
    ),
}


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


# ---------------------------------------------------------------------------------------------
# Pool files


def read(path: str | Path, name: str | None = None) -> Pool:
    """A pool from a file: ``.txt`` one description per line (blank lines skipped), or ``.tsv`` /
    ``.csv`` with a ``text`` column and optional ``concept``, ``value``, ``in_world`` columns."""
    path = Path(path)
    if not path.is_file():
        raise PoolNotAvailableError(f"No pool file at {path}.")
    name = name or path.stem
    if path.suffix in (".tsv", ".csv"):
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", keep_default_na=False)
        if "text" not in df:
            raise ValueError(f"{path} has no 'text' column (columns: {', '.join(df.columns)}).")
        get = lambda c, f=str: tuple(map(f, df[c])) if c in df else None  # noqa: E731
        in_world = get("in_world", lambda v: str(v).lower() in ("true", "1"))
        return Pool(name, get("text"), get("concept"), get("value"), in_world)
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return Pool(name, tuple(ln for ln in lines if ln))


def write(pool: Pool, path: str | Path) -> Path:
    """Save a pool: ``.txt`` (texts only) or ``.tsv`` (with its ground truth)."""
    path = Path(path)
    if path.suffix == ".txt":
        path.write_text("\n".join(pool.texts) + "\n", encoding="utf-8")
    else:
        pool.frame().to_csv(path, sep="\t", index=False)
    return path


def _url_file(url: str) -> Path:
    from ccs.cache import cache_dir

    digest = hashlib.blake2b(url.encode(), digest_size=6).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1]) or "pool.txt"
    return cache_dir("pools") / f"{digest}-{stem}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".crc32")


def _download_problem(path: Path) -> str | None:
    """What is wrong with a downloaded pool file (None if it matches the size and CRC-32 recorded
    when it was downloaded, or if it was put there by hand, without a record)."""
    try:
        record = json.loads(_sidecar(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"its checksum record {_sidecar(path)} is unreadable ({type(e).__name__}: {e})"
    try:
        data = path.read_bytes()
        size, crc = int(record["bytes"]), int(record["crc32"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    if len(data) != size:
        return f"{'truncated' if len(data) < size else 'grown'} ({len(data)} of {size} bytes)"
    if zlib.crc32(data) != crc:
        return "checksum mismatch (its contents changed after the download)"
    return None


def _warn(message: str) -> None:
    from ccs.cache import CacheWarning

    warnings.warn(message, CacheWarning, stacklevel=3)


def fetch(url: str, timeout: float = 30) -> Path:
    """Download a pool file into the cache (once) and return its path. A cached download that no
    longer matches its recorded checksum is reported and downloaded again."""
    path = _url_file(url)
    if path.is_file():
        problem = _download_problem(path)
        if problem is None:
            return path
        _warn(f"Damaged pool download {path}: {problem}. Downloading it again.")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except (urllib.error.URLError, OSError) as e:
        raise PoolNotAvailableError(
            f"Could not download the pool {url} ({e}). Offline? Download the file on a machine "
            f"with internet and pass its path instead, or put it at {path}."
        ) from None
    _write_atomic(_sidecar(path), json.dumps({"url": url, "bytes": len(data), "crc32": zlib.crc32(data)}).encode())
    _write_atomic(path, data)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    from ccs.cache import write_atomic  # a full disk: an error naming the file, no temporary file left

    write_atomic(path, data)


def subset(pool: Pool, n: int) -> Pool:
    """`n` lines of a pool spread evenly over it (every k-th line, so every concept keeps its share),
    with their ground truth; the whole pool when n >= its size."""
    if n >= len(pool):
        return pool
    idx = np.linspace(0, len(pool) - 1, n).round().astype(int)
    pick = lambda col: None if col is None else tuple(col[i] for i in idx)  # noqa: E731
    return Pool(f"{pool.name}:{n}", pick(pool.texts), pick(pool.concepts), pick(pool.values), pick(pool.in_world))


def load(spec: str = "world", *, download: bool = False) -> Pool:
    """A pool by name ("world", "world:N" for N lines of it, "textspan"), path or URL. A URL (or "textspan") is read from the
    cache; it is downloaded only with ``download=True``, never behind your back."""
    if spec == "world":
        return world()
    if spec.startswith("world+"):
        return world(combos=int(spec.split("+", 1)[1]))
    if spec.startswith("world:"):  # a quick pool: every k-th line of the world pool, ground truth kept
        n = spec.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise PoolNotAvailableError(f"pool {spec!r}: 'world:N' takes a number of lines N >= 1")
        return subset(world(), int(n))
    url = ALIASES.get(spec, spec)
    if re.match(r"https?://", url):
        path = _url_file(url)
        if not path.is_file():
            if not download:
                raise PoolNotAvailableError(
                    f"The pool {spec!r} ({url}) is not downloaded. Fetch it once with "
                    f"`ccs pool fetch {spec}` (or load(..., download=True)), which needs the network."
                )
            path = fetch(url)
        elif problem := _download_problem(path):
            if not download:
                raise PoolNotAvailableError(
                    f"The downloaded pool {spec!r} at {path} is damaged ({problem}). Delete that "
                    f"file and fetch it again with `ccs pool fetch {spec}` (or load(..., "
                    "download=True)), which needs the network."
                )
            path = fetch(url)
        return read(path, name=spec if spec in ALIASES else None)
    if not Path(spec).exists():
        raise PoolNotAvailableError(
            f"Unknown pool {spec!r}: not 'world', not one of {', '.join(ALIASES)}, not a URL and not a file on this machine."
        )
    return read(spec)


# ---------------------------------------------------------------------------------------------
# Text embeddings


def _read_embeddings(path: Path, rows: int) -> tuple[np.ndarray | None, str | None]:
    """The embeddings cached at `path` (None if absent or damaged) and what is wrong (None if
    nothing): the file must load, hold float32 [rows, D] and match its stored CRC-32."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # (np.load leaks the
            emb, crc = z["embeddings"], z["crc32"]  # file it opens when the archive is unreadable)
    except FileNotFoundError:
        return None, None
    except Exception as e:  # truncated (BadZipFile, EOFError), garbled (ValueError), a member missing
        return None, f"unreadable ({type(e).__name__}: {e})"
    if emb.dtype != np.float32 or emb.ndim != 2 or len(emb) != rows or crc.shape != ():
        return None, f"holds {emb.dtype}{list(emb.shape)}, expected float32[{rows}, D]"
    if zlib.crc32(np.ascontiguousarray(emb)) != int(crc):
        return None, "checksum mismatch (its contents changed after they were written)"
    return emb, None


def embed(pool: Pool, model_name: str, model, tokenizer, batch_size: int = 256) -> np.ndarray:
    """Normalised text embeddings [M, D] (float32) of a pool, cached per (model weights, pool) in an
    ``.npz`` with their CRC-32, written atomically. A cache file that is unreadable, truncated, of
    the wrong shape or fails its checksum is reported (a CacheWarning naming it) and recomputed."""
    from ccs.cache import cache_dir, write_atomic
    from ccs.fingerprints import fingerprint
    from ccs.evaluate import text_embeddings

    slug = re.sub(r"[^A-Za-z0-9._+-]", "_", pool.name)[:40]
    folder = cache_dir("text_embeddings", model_name)
    stem = f"{slug}-{pool.key}-{fingerprint(model)[:16]}"
    path = folder / f"{stem}.npz"
    emb, problem = _read_embeddings(path, len(pool))
    if emb is not None:
        return emb
    if problem is not None:
        _warn(f"Damaged text-embedding cache {path}: {problem}. Recomputing it.")
    emb = text_embeddings(model, tokenizer, list(pool.texts), batch_size=batch_size).numpy()
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    write_atomic(
        path, lambda f: np.savez(f, embeddings=emb, crc32=np.uint32(zlib.crc32(emb))), size=emb.nbytes + 1024
    )  # a full disk: an error naming the file, no temporary file
    (folder / f"{stem}.npy").unlink(missing_ok=True)  # the previous format: no checksum
    return emb
