"""Fitting the embedding backend's calibrations on hand-written heads (`calibrate`, `fit_offsets`,
`fit_calibrations`), and the checks that go with them (`without_lines`, `line_checks`). The
per-model world calibrations, which are chosen by the scores they give, are in `ccs.llm.model_fit`."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ccs.llm.calibration import calibrations, load_heads
from ccs.llm.concepts import UNKNOWN, normalise, same
from ccs.llm.embedding import EmbeddingBackend, embed

# How `fit_calibrations` refits the stored ones: on which hand-written heads, with which margins tried
# (real pools keep the single threshold they always had; lenient is fixed, never refitted).
RECIPES = {
    "real": {"heads": "dev", "margins": (None,)},
    "world": {"heads": "world_dev", "margins": (None, *np.round(np.arange(0, 0.205, 0.01), 2))},
}


def calibrate(
    heads: Sequence[dict], background: Sequence[str] | None = None, *, margins=(None,), labeler: str = "vote", base: str = "real"
) -> dict:
    """Fit the judge on labelled heads (a dev set): the threshold (and, among `margins`, the margin)
    that maximise Cohen's kappa of judge(text, intended concept) against the per-text truth. Also
    reports the label accuracy on the heads that have a concept."""
    from sklearn.metrics import cohen_kappa_score

    b = EmbeddingBackend(threshold=0.0, background=background, labeler=labeler, calibration=base)
    b.margin = None
    named = [h for h in heads if h["concept"] != UNKNOWN]
    texts = [t for h in named for t in h["texts"]]
    embed(texts)  # one batched pass before the per-text scores
    y = np.array([v for h in named for v in h["truth"]])
    s = np.array([b.score(t, h["concept"]) for h in named for t in h["texts"]])
    gap = b.scores(texts).max(1) - s  # how far each text's score for the concept lies below its best
    grid = np.round(np.arange(-0.3, 0.5, 0.005), 3)
    fits = [(cohen_kappa_score(y, (s >= g) & (m is None or gap <= m)), -(m or 0), g, m) for m in margins for g in grid]
    kappa, _, threshold, margin = max(fits, key=lambda f: f[:2])  # ties: the larger margin
    acc = np.mean([same(b.label(h["texts"]), h["concept"]) for h in named])
    return {
        "threshold": float(threshold),
        "margin": None if margin is None else float(margin),
        "labeler": labeler,
        "examples": b.examples,
        "dev_judge_kappa": round(float(kappa), 3),
        "dev_label_accuracy": round(float(acc), 3),
        "dev_heads": len(heads),
    }


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
    if isinstance(b, EmbeddingBackend):  # one batched pass: the judge below embeds one line at a time
        embed([t for t in pool.texts if t not in picked])
    own, other, distract = [], [], []
    for text, concept, in_world in zip(pool.texts, pool.concepts, pool.in_world):
        if text in picked:
            continue
        if in_world:
            own.append(b.judge(text, concept) == 1)
            other.append(b.judge(text, str(rng.choice([c for c in concepts if c != concept]))) == 0)
        else:
            distract.append(all(b.judge(text, c) == 0 for c in concepts))
    return {
        "unpicked_own_concept": float(np.mean(own)),
        "unpicked_other_concept": float(np.mean(other)),
        "unpicked_lines": len(own),
        "distractors_rejected": float(np.mean(distract)) if distract else float("nan"),
        "distractor_lines": len(distract),
    }


def fit_calibrations() -> dict[str, dict]:
    """Refit the stored calibrations by their RECIPES (the lenient one is kept as it is)."""
    fitted = {"lenient": calibrations()["lenient"]}
    for name, r in RECIPES.items():
        fitted[name] = calibrate(load_heads(r["heads"]), margins=r["margins"], base=name)
    return fitted
