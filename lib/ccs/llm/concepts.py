"""The concept vocabulary of the labeler and the judge (``data/concepts.yaml``): its concepts, and
which concept a word or label names (synonyms, plurals, a narrow concept's family, its group)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

UNKNOWN = "unknown"
DATA = resources.files("ccs") / "data"


@dataclass(frozen=True)
class Concept:
    name: str
    description: str
    synonyms: tuple[str, ...]
    group: str | None  # the paper's concept group (locations, objects, animals, colors), if any
    family: str | None  # the broader vocabulary concept a narrow one belongs to (bird -> animal)


@cache
def vocabulary() -> dict[str, Concept]:
    """The curated concepts, by name, in file order."""
    raw = yaml.safe_load((DATA / "concepts.yaml").read_text())["concepts"]
    return {
        name: Concept(name, c["description"], tuple(c.get("synonyms", ())), c.get("group"), c.get("family"))
        for name, c in raw.items()
    }


@cache
def _synonym_index() -> dict[str, str]:
    index = {}
    for c in vocabulary().values():
        for word in (c.name, *c.synonyms):
            index.setdefault(_word(word), c.name)  # a concept's own name wins over another's synonym
    index[UNKNOWN] = UNKNOWN
    return index


def _word(s: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", s.lower())


def normalise(word: str) -> str | None:
    """The vocabulary concept a word names (itself, a synonym, or a plural of one); None if none."""
    w, index = _word(word), _synonym_index()
    if w in index:
        return index[w]
    if w.endswith("s") and w[:-1] in index:
        return index[w[:-1]]
    return None


def same(a: str, b: str) -> bool:
    """Whether two labels name the same concept: equal after normalising synonyms, or one is the
    other's family (bird and animal; a ground truth is often coarser than the vocabulary)."""
    na, nb = normalise(a) or _word(a), normalise(b) or _word(b)
    if na == nb:
        return True
    v = vocabulary()
    return (na in v and v[na].family == nb) or (nb in v and v[nb].family == na)


def group(concept: str) -> str | None:
    """The paper's concept group of a concept (or of a synonym of one)."""
    name = normalise(concept)
    return vocabulary()[name].group if name in vocabulary() else None
