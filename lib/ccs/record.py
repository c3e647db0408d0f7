"""The book's claims and the record each experiment page writes of them: per source of head sets
(`SOURCES`), per claim of `CLAIMS`, an estimate with its 95 % interval and a verdict (`row`). The
seeds page adds how many analysis seeds agree (`seed_agreement`, `agreement_record`). The replication
page (ccs.replication) reads the records of every model; the pages write them through this module
alone, so the record is defined in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("this run", "ground truth", "function")


@dataclass(frozen=True)
class Claim:
    key: str  # the key in a page's ``replication`` record
    experiment: str  # the page that measures it
    title: str
    effect: str  # what the number is
    scale: float = 100.0  # shown as estimate * scale
    unit: str = " pp"
    pooled: bool = True  # whether a pooled estimate across models makes sense
    origin: str = "paper"  # "paper": the paper's claim; "book": a question this book adds
    bounded: bool = False  # a proportion in [0, 1]: pooled on the logit scale


CLAIMS = (
    Claim(
        "ccs-high-share",
        "ccs",
        "Fully consistent heads exist",
        "share of the analysed heads with CCS = 5 (Wilson interval)",
        unit=" %",
        bounded=True,
    ),
    Claim(
        "pruning-high-vs-low",
        "pruning",
        "Soft pruning: high-CCS heads cost more than low-CCS heads",
        "extra drop in the probability of the true class, high minus low set",
    ),
    Claim(
        "pruning-high-vs-random",
        "pruning",
        "Soft pruning: high-CCS heads cost more than random heads",
        "extra drop, high set minus random sets (interval over images and draws)",
    ),
    Claim(
        "importance-rho",
        "pruning",
        "A head's CCS predicts the cost of pruning it alone",
        "Spearman's rho of CCS and single-head drop",
        scale=1.0,
        unit="",
        origin="book",
    ),
    Claim(
        "concept-diagonal",
        "concepts",
        "Concept pruning hits the concept's own task",
        "excess cost on the own task minus on the other tasks",
    ),
    Claim(
        "concept-scene-vs-shape",
        "concepts",
        "Scene heads cost the scene task more than shape heads do",
        "excess cost on the scene task, scene heads minus shape heads (Country-211: location against animal heads)",
    ),
    Claim(
        "concept-shape-vs-scene",
        "concepts",
        "Shape heads cost the shape task more than scene heads do",
        "excess cost on the shape task, shape heads minus scene heads (CIFAR-10 objects: object against location heads)",
    ),
    Claim(
        "shifted-high-vs-low",
        "ood",
        "Shifted data: high-CCS heads cost more than low-CCS heads",
        "extra drop, high minus low, mean over the sketch, noisy and novel-shades splits",
    ),
    Claim(
        "shifted-high-vs-random",
        "ood",
        "Shifted data: high-CCS heads cost more than random heads",
        "extra drop, high minus random, mean over the sketch, noisy and novel-shades splits",
    ),
    Claim(
        "ood-auroc-drop",
        "ood",
        "Pruning high-CCS heads hurts OOD detection",
        "AUROC of the novel-shapes detector (MCM), unpruned minus high set pruned",
        scale=1.0,
        unit="",
        origin="book",
    ),
    Claim(
        "video-high-vs-low",
        "video",
        "Text-to-video retrieval: high-CCS heads cost more than low-CCS heads",
        "extra drop in text-to-video R@1, high minus low",
    ),
    Claim(
        "video-high-vs-random",
        "video",
        "Text-to-video retrieval: high-CCS heads cost more than random heads",
        "extra drop in text-to-video R@1, high minus random",
    ),
)
TESTS = {"paper": "the paper's", "ranked": "ranked (secondary)", "function": "most vs least specialised"}


def row(d, verdict: str | None = None, test: str | None = None) -> dict:
    """A page's record of one claim from an (estimate, low, high) triple; the verdict defaults to the
    one the intervals give (`ccs.verdicts.verdict`); `test` says which sets it compares ("paper": the
    paper's categories, "ranked": the secondary analysis where they cannot be formed)."""
    from ccs.verdicts import verdict as from_intervals

    est, lo, hi = (float(x) for x in d)
    return {
        "estimate": est,
        "low": lo,
        "high": hi,
        "verdict": verdict or from_intervals([(est, lo, hi)]),
        **({"test": test} if test else {}),
    }


def share(k: int, n: int) -> tuple[float, float, float]:
    """k of n as a share with its Wilson 95 % interval (statsmodels), which stays inside [0, 1]: the
    CCS page's claim that fully consistent heads exist (k: the heads with CCS 5 of n scored)."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, method="wilson")
    return k / n, float(lo), float(hi)


SEED_CLAIMS = {
    "CCS-5 share": "ccs-high-share",
    "high vs low": "pruning-high-vs-low",
    "high vs random": "pruning-high-vs-random",
    "importance rho": "importance-rho",
    "shifted: high vs low": "shifted-high-vs-low",
    "shifted: high vs random": "shifted-high-vs-random",
    "OOD AUROC drop": "ood-auroc-drop",
    "concept diagonal": "concept-diagonal",
    "concepts: scene vs shape": "concept-scene-vs-shape",
    "concepts: shape vs scene": "concept-shape-vs-scene",
    "video: high vs low": "video-high-vs-low",
    "video: high vs random": "video-high-vs-random",
}  # the seeds page's claims -> the replication page's keys: every claim of the CCS and set-based pages


def seed_agreement(by_seed, claims=tuple(SEED_CLAIMS)):
    """From the seeds page's rows (analysis seed, sets, "<claim> verdict"): per source and claim, the
    verdict of each seed ("no verdict" where a seed could not test it, e.g. no labelled concept with a
    task of its own), how many seeds agree with the most common one, and whether the claim holds (is
    supported) on every seed. Claims that no seed of a source tested are left out."""
    import pandas as pd

    from ccs.verdicts import NO_VERDICT

    rows = []
    for source, sub in by_seed.groupby("sets", sort=False):
        sub = sub.sort_values("analysis seed")
        for claim in claims:
            col = f"{claim} verdict"
            if col not in sub or sub[col].isna().all():
                continue
            verdicts = [v if isinstance(v, str) else NO_VERDICT for v in sub[col]]
            common = max(set(verdicts), key=verdicts.count)
            rows.append(
                {
                    "sets": source,
                    "claim": claim,
                    "verdicts by seed": ", ".join(f"{s}: {v}" for s, v in zip(sub["analysis seed"], verdicts)),
                    "agree": f"{verdicts.count(common)} of {len(verdicts)} {common}",
                    "holds on every seed": "yes" if all(v == "supported" for v in verdicts) else "no",
                }
            )
    return pd.DataFrame(rows).set_index(["sets", "claim"])


def agreement_record(agreement) -> dict:
    """The seeds page's record for the replication page: {source: {claim key: {"agree", "replicated"}}}."""
    out: dict = {}
    for (source, claim), row in agreement.iterrows():
        out.setdefault(source, {})[SEED_CLAIMS.get(claim, claim)] = {
            "agree": row["agree"],
            "replicated": row["holds on every seed"] == "yes",
        }
    return out
