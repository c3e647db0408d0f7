"""The per-model world calibrations (``data/world_model_calibrations.yaml``), each fitted
leave-one-model-out and chosen by the scores it gives (`ccs.scores`).

The one module of `ccs.llm` that needs `ccs.scores`, which itself needs `ccs.llm` (the vocabulary, the
Backend protocol, InvalidAnswer): nothing in the package imports it, so `import ccs.llm` loads no
`ccs.scores` and the two have no import cycle. `ccs.llm.fit_model_calibrations` (and
`ccs.llm.OFFSET_STRENGTHS`) still name its functions: the package loads this module when they are
first asked for."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ccs import scores
from ccs.llm.concepts import same
from ccs.llm.embedding import EmbeddingBackend
from ccs.llm.fitting import fit_offsets, without_lines


def _fit_world_model(heads: Sequence[dict], strength: float) -> dict:
    """The world calibration with offsets fitted on `heads`, and the margin (no threshold: every
    world line names some concept) that maximises the judge's kappa against the heads' truth."""
    from sklearn.metrics import cohen_kappa_score

    b = EmbeddingBackend(calibration="world")
    offsets = fit_offsets(b, heads, strength)
    b.shift(offsets)
    labels = [scores.majority_concept(h["concepts"]) for h in heads]
    texts = [t for h in heads for t in h["texts"]]
    y = np.array([int(same(c, lab)) for h, lab in zip(heads, labels) for c in h["concepts"]])
    s = np.array([b.score(t, lab) for h, lab in zip(heads, labels) for t in h["texts"]])
    gap = b.scores(texts).max(1) - s
    kappa, _, margin = max((cohen_kappa_score(y, gap <= m), -m, m) for m in np.round(np.arange(0.005, 0.205, 0.005), 3))
    return {
        "threshold": -1.0,
        "margin": float(margin),
        "labeler": "vote",
        "examples": True,
        "offsets": offsets,
        "strength": strength,
        "fit_judge_kappa": round(float(kappa), 3),
    }


# penalties tried for the offsets; each model's is chosen by leave-one-model-out within its fitting models
OFFSET_STRENGTHS = (3e-3, 1e-3, 3e-4, 1e-4)


def fit_model_calibrations(records: dict[str, list[dict]], strengths=OFFSET_STRENGTHS) -> dict[str, dict]:
    """For each model of `records` (TextSpan records carrying each text's generating concept, by
    model), a world calibration fitted leave-one-model-out: on the heads of the other models only,
    the offset penalty chosen by leaving out each of those in turn (mean of label accuracy, judge
    kappa and CCS Spearman against the truth), so that a model's page never judges with constants
    fitted on its own heads."""

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
            return float(
                np.mean(
                    [
                        quality(_fit_world_model([h for o in others if o != m for h in train[o]], strength), train[m])
                        for m in others
                    ]
                )
            )

        strength = max(strengths, key=inner) if len(others) > 1 else strengths[0]
        out[model] = _fit_world_model([h for o in others for h in train[o]], strength) | {
            "fitted_on": others,
            "held_out_lines": len(held),
        }
    return out
