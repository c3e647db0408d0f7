"""Verdicts: what an interval, or several, says of a hypothesis that predicts a positive difference
(*supported*, *contradicted*, *inconclusive*, or *no verdict* where no test could be formed), and how a
page writes an interval."""

from __future__ import annotations

VERDICTS = ("supported", "contradicted", "inconclusive")
NO_VERDICT = "no verdict"  # nothing could show: a test that cannot be formed, a ceiling, chance


def verdict(intervals) -> str:
    """From (estimate, low, high) intervals of differences the hypothesis predicts to be positive:
    ``supported`` when every interval lies above 0, ``contradicted`` when one lies wholly below 0
    (the opposite of the claim is shown), ``inconclusive`` otherwise (an interval straddles 0)."""
    intervals = list(intervals)
    if not intervals:
        return NO_VERDICT
    if all(lo > 0 for _, lo, _ in intervals):
        return "supported"
    if any(hi < 0 for _, _, hi in intervals):
        return "contradicted"
    return "inconclusive"


def interval_text(d: tuple[float, float, float], scale: float = 100, unit: str = " pp", digits: int = 1) -> str:
    """'4.1 pp [2.9, 5.3]' for an (estimate, low, high) triple."""
    return f"{d[0] * scale:.{digits}f}{unit} [{d[1] * scale:.{digits}f}, {d[2] * scale:.{digits}f}]"
