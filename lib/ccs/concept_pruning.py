"""The concept-specific pruning page's claims (notebooks/concepts.py) on a pruning run
(`ccs.pruning.Results`): which task measures a concept, the concept x task matrices of what pruning a
concept's heads costs against as many random heads, the diagonal test (a concept's heads cost its own
task more than the others) and the paper's cross-concept comparison."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ccs import intervals
from ccs.pruning import Results, group


def task_for(concept: str, tasks) -> str | None:
    """The task that measures a concept: the task of the same name (synonyms allowed); the paper's
    locations are the world's scenes (where the picture was taken); None when no task does."""
    from ccs.llm import normalise
    from ccs.llm import group as vocabulary_group  # the concept's group (ccs.pruning.group is a condition's)

    name = normalise(concept) or concept
    for task in tasks:
        if name == (normalise(task) or task):
            return task
    if (name == "location" or vocabulary_group(concept) == "locations") and "scene" in tasks:
        return "scene"
    if vocabulary_group(concept) == "colors" and "colour" in tasks:
        return "colour"
    return None


def concept_matrix(r: Results, concepts, evalset: str = "test", measure: str = "p_true") -> dict[str, pd.DataFrame]:
    """Concept x task matrices (percentage points) for concept pruning: ``change`` = pruned - original,
    ``control`` = the equal-count random control (``<concept>-random``) - original, ``excess`` =
    change - control (how much more the concept's heads cost than as many random heads)."""
    tasks = r.tasks(evalset)
    out = {k: pd.DataFrame(index=list(concepts), columns=tasks, dtype=float) for k in ("change", "control", "excess")}
    for c in concepts:
        for t in tasks:
            base = r.value("original", evalset, measure, [t])
            out["change"].loc[c, t] = 100 * (r.value(c, evalset, measure, [t]) - base)
            out["control"].loc[c, t] = 100 * (r.value(f"{c}-random", evalset, measure, [t]) - base)
    out["excess"] = out["change"] - out["control"]
    return out


def diagonal_test(r: Results, concepts, evalset: str = "test", measure: str = "p_true", seed: int = 0, prefix: str = "") -> dict:
    """Does pruning a concept's heads cost its own task more than the other tasks? Per image and per
    draw of the random controls, the excess cost (random control - pruned) averaged over the diagonal
    cells (concept, its task) minus its average over the off-diagonal cells; its mean with an interval
    that resamples the images and the controls' draws (`intervals.two_level_ci`). Only concepts that
    some task measures take part. `prefix` names conditions of another label source ("truth: ")."""
    tasks = r.tasks(evalset)
    rows = {c: task_for(c, tasks) for c in concepts}
    rows = {c: t for c, t in rows.items() if t is not None}
    if not rows:
        return {"concepts": [], "diagonal": float("nan"), "off_diagonal": float("nan"), "difference": (float("nan"),) * 3}
    draws = min(len(r.members(f"{prefix}{c}-random")) for c in rows)

    def excess(c, t):  # [draws, images]
        return r.per_draw(f"{prefix}{c}-random", evalset, measure, [t])[:draws] - r.per_image(
            f"{prefix}{c}", evalset, measure, [t]
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # images no diagonal cell applies to
        diag = np.nanmean([excess(c, t) for c, t in rows.items()], 0)
        off = np.nanmean([excess(c, t) for c, own in rows.items() for t in tasks if t != own], 0)
    keep = ~(np.isnan(diag).any(0) | np.isnan(off).any(0))
    return {
        "concepts": list(rows),
        "diagonal": float(np.mean(diag[:, keep])),
        "off_diagonal": float(np.mean(off[:, keep])),
        "difference": intervals.two_level_ci(diag[:, keep], off[:, keep], seed=seed, paired_draws=True),
    }


def cross_test(
    r: Results, concept: str, other: str, evalset: str = "test", measure: str = "p_true", seed: int = 0, prefix: str = ""
) -> tuple[float, float, float]:
    """The paper's concept tables as one comparison (Country-211: the location heads against the
    animal heads; CIFAR-10 objects: the object heads against the location heads): on `concept`'s own
    task, the excess cost (random control - pruned) of pruning `concept`'s heads minus that of pruning
    `other`'s heads. Excess over each set's own random controls, because the two sets differ in size
    (the paper's tables compare raw accuracies); the interval resamples the images and both controls'
    draws. NaNs when either concept has no heads here or no task measures `concept`."""
    task = task_for(concept, r.tasks(evalset))
    have = set(r.conditions()) | {group(c) for c in r.conditions()}
    if task is None or not {f"{prefix}{c}{s}" for c in (concept, other) for s in ("", "-random")} <= have:
        return (float("nan"),) * 3

    def excess(c):  # [draws, images]
        return r.per_draw(f"{prefix}{c}-random", evalset, measure, [task]) - r.per_image(f"{prefix}{c}", evalset, measure, [task])

    return intervals.two_level_ci(excess(concept), excess(other), seed=seed)
