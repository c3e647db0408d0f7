"""The `Pool` type: descriptions with, when known, the concept and value each one describes; and the
error for a pool that is neither generated nor on this machine (`PoolNotAvailableError`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd


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
