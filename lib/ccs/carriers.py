"""What carries a verdict: the same claim per task, leaving out one task, and leaving out one head.

A verdict over all tasks can rest on one task whose heads a set happens to hold, or on one head of
the high set. Each function here recomputes the claim's differences (`pruning.Results.compare`)
under one change and the verdict (`verdicts.verdict`) they give, so that a page can say "supported,
carried by position" instead of a bare "supported". Tasks the analysed heads cannot move at all
(`untestable`) get no verdict of their own: pruning cannot show anything on them.

`pairs` maps a claim's name to the two conditions it compares, ``{"high vs low": ("low", "high")}``:
the claim predicts that compare(a, b) = score(a pruned) - score(b pruned) > 0.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from ccs.concept_pruning import diagonal_test
from ccs.pruning import Results
from ccs.verdicts import interval_text, verdict

ALL_ANALYSED = "every analysed head"  # the condition pruning every analysed head (see `untestable`)


def without(head: str, high_name: str = "high") -> str:
    """The name of the condition that prunes the high set (`high_name`) with `head` put back."""
    return f"{high_name} minus {head}"


def without_conditions(high: list[str], high_name: str = "high") -> dict[str, list[str]]:
    """The conditions `leave_one_head_out` needs: the high set minus each of its heads in turn."""
    return {without(h, high_name): [x for x in high if x != h] for h in high} if len(high) > 1 else {}


def _claims(
    r: Results,
    pairs: Mapping[str, tuple[str, str]],
    evalset: str,
    measure: str,
    tasks=None,
    swap: Mapping[str, str] | None = None,
) -> dict[str, tuple[float, float, float]]:
    swap = swap or {}
    return {k: r.compare(swap.get(a, a), swap.get(b, b), evalset, measure, tasks) for k, (a, b) in pairs.items()}


def untestable(r: Results, evalset: str = "test", measure: str = "p_true", floor_pp: float = 1.0) -> dict[str, str]:
    """Tasks on which pruning cannot show anything: pruning every analysed head (the condition
    ALL_ANALYSED) moves them by less than `floor_pp` percentage points, so no subset of those heads
    can matter to them. {task: why}."""
    if ALL_ANALYSED not in r.conditions():
        return {}
    out = {}
    for t in r.tasks(evalset):
        d = r.drop(ALL_ANALYSED, evalset, measure, [t])
        if d[0] * 100 < floor_pp:
            before = r.value("original", evalset, "correct", [t])
            after = r.value(ALL_ANALYSED, evalset, "correct", [t])
            out[t] = (
                f"pruning every analysed head moves it by {100 * d[0]:.1f} pp (top-1 {100 * before:.1f} % "
                f"-> {100 * after:.1f} %): the analysed heads do not carry it"
            )
    return out


def per_task(r: Results, pairs, evalset: str = "test", measure: str = "p_true") -> pd.DataFrame:
    """One row per task: each claim's difference with its interval, and the verdict on that task
    alone (``no verdict`` on an untestable task)."""
    skip = untestable(r, evalset, measure)
    rows = []
    for t in r.tasks(evalset):
        c = _claims(r, pairs, evalset, measure, [t])
        rows.append(
            {
                "task": t,
                **{k: interval_text(v) for k, v in c.items()},
                "verdict": "no verdict (untestable)" if t in skip else verdict(c.values()),
            }
        )
    return pd.DataFrame(rows).set_index("task")


def leave_one_task_out(r: Results, pairs, evalset: str = "test", measure: str = "p_true") -> pd.DataFrame:
    """One row per task left out: the claims over the other tasks and their verdict."""
    tasks = r.tasks(evalset)
    rows = []
    for t in tasks:
        c = _claims(r, pairs, evalset, measure, [x for x in tasks if x != t])
        rows.append({"left out": t, **{k: interval_text(v) for k, v in c.items()}, "verdict": verdict(c.values())})
    return pd.DataFrame(rows).set_index("left out")


def leave_one_head_out(
    r: Results, pairs, high: list[str], evalset: str = "test", measure: str = "p_true", high_name: str = "high"
) -> pd.DataFrame:
    """One row per head of the high set put back (the conditions of `without_conditions`, measured on
    `evalset`): the claims with the high set minus that head, and their verdict."""
    rows = []
    for h in high:
        name = without(h, high_name)
        if name not in r.conditions():
            continue
        c = _claims(r, pairs, evalset, measure, swap={high_name: name})
        rows.append({"left out": h, **{k: interval_text(v) for k, v in c.items()}, "verdict": verdict(c.values())})
    return pd.DataFrame(rows, columns=["left out", *pairs, "verdict"]).set_index("left out")


def carried(full: str, by_task: pd.DataFrame, by_head: pd.DataFrame) -> dict:
    """What carries a verdict: the tasks and heads without which it changes, and to what. {"verdict",
    "tasks", "heads", "changes", "text"}; text reads e.g. "supported; it holds without any one task
    and without any one high head" or "supported; without position it would be inconclusive"."""
    changes = {
        **{t: v for t, v in by_task["verdict"].items() if v != full},
        **{h: v for h, v in by_head["verdict"].items() if v != full},
    }
    tasks = [t for t in by_task.index if t in changes]
    heads = [h for h in by_head.index if h in changes]
    if not changes:
        checked = " and without any one high head" if len(by_head) else ""
        text = f"{full}; it holds without any one task{checked}"
    else:
        by_verdict: dict[str, list[str]] = {}
        for item, v in changes.items():
            by_verdict.setdefault(v, []).append(item)
        text = f"{full}; " + ", ".join(f"without {' or '.join(items)} it would be {v}" for v, items in by_verdict.items())
    return {"verdict": full, "tasks": tasks, "heads": heads, "changes": changes, "text": text}


def leave_one_concept_out(r: Results, concepts, evalset: str = "test", measure: str = "p_true", prefix: str = "") -> pd.DataFrame:
    """Concept-specific pruning's carriers: the diagonal test without each concept in turn."""
    rows = []
    for c in diagonal_test(r, concepts, evalset, measure, prefix=prefix)["concepts"]:
        d = diagonal_test(r, [x for x in concepts if x != c], evalset, measure, prefix=prefix)["difference"]
        rows.append(
            {
                "left out": c,
                "diagonal - off-diagonal": interval_text(d),
                "verdict": "no verdict (no concept left)" if d[0] != d[0] else verdict([d]),
            }
        )
    return pd.DataFrame(rows, columns=["left out", "diagonal - off-diagonal", "verdict"]).set_index("left out")
