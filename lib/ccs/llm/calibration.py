"""The stored calibrations of the embedding backend and the hand-written data they are fitted on:
which calibration a pool is judged with, the stored constants (``data/embedding_calibration.yaml``,
``data/world_model_calibrations.yaml``), the hand-written heads and the concepts' example lines.
Fitting them is `ccs.llm.fitting`'s job (and `ccs.llm.model_fit`'s for the trained models)."""

from __future__ import annotations

from functools import cache

import yaml

from ccs.llm.concepts import DATA, vocabulary


def load_heads(split: str) -> list[dict]:
    """Hand-written 5-text heads with their intended concept and per-text 0/1 truth.

    ``dev`` calibrates the embedding backend for real pools, ``world_dev`` for concept-world pools;
    ``heldout`` is kept apart to measure it.
    Each record: ``{"concept": str, "texts": [str]*5, "truth": [0|1]*5}``.
    """
    raw = yaml.safe_load((DATA / f"heads_{split}.yaml").read_text())
    return [{"concept": h["concept"], "texts": list(h["texts"]), "truth": [int(v) for v in h["texts"].values()]} for h in raw]


# The named calibrations of the embedding backend, in data/embedding_calibration.yaml: each fitted by
# `calibrate` on hand-written heads that are never a scored model's own (the paper's in-context
# examples play this part for its LLM). ``real``: real CLIP description pools, fitted on
# heads_dev.yaml; ``world``: concept-world pools, fitted on heads_world_dev.yaml; ``lenient``: the
# judge as it was before pools had their own calibration (one threshold, no margin, the labeler
# takes the best mean score), kept to show what a lenient judge does.
CALIBRATIONS = ("real", "world", "lenient")


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
