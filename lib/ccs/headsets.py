"""The head sets the paper prunes: high and low CCS, random and equal-count baselines, concept heads.

The paper's categories are high = CCS 5 and low = CCS <= 1. Its baselines are *random* (as many
heads as the high set, drawn from the analysed layers excluding the high heads, over several seeds)
and *equal-count* (min(|high|, |low|) heads of each, over several seeds). Two things can make them
meaningless on a small model, and both are detected, handled and written into `notes` for the page:

- too few heads in a category (fewer than `min_size`): the paper's test cannot be formed, and the
  sets become *ranked* sets, the k highest and the k lowest CCS (a secondary analysis). Where such a
  cut runs through heads tied at one CCS, which of them are in the set is chance: each draw picks
  the tied heads at random (`tie_draws`), the conditions ``high/s`` and ``low/s`` are pruned one by
  one, and the intervals resample the draws with the images;
- random draws that cannot differ across seeds (fewer possible sets than seeds, e.g. 12 eligible
  heads for a set of 12): the random heads are drawn from the heads of *all* layers instead, as the
  paper's code does for ViT-B-32-OpenAI.

The sets come from a CCS table (this run's, or the ground truth on the concept world, see
`truth_table`) or from the paper's published lists (`published`). Heads are named as in the paper,
``L{layer}.H{head}``, 0-indexed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

import numpy as np
import pandas as pd

from ccs import scores
from ccs.llm import group, normalise
from ccs.scores import PAPER, Categories, head_name


TIE_DRAWS = 5  # draws of the heads tied at a ranked cut (each is a pruned condition on every split)
SECONDARY_DRAWS = 5  # random and tie draws of the sets a page shows beside its own


def whose(source: str) -> str:
    """A source of sets as a possessive: "this run's", "the ground truth's", "the function"."""
    return {"this run": "this run's", "ground truth": "the ground truth's"}.get(source, f"the {source}")


@dataclass
class HeadSets:
    """High and low heads, and the baselines drawn against them (one list per seed)."""

    high: list[str]  # the high set (with tie draws: the first draw's)
    low: list[str]
    random: list[list[str]]  # per seed: len(high) heads, excluding the high heads (of the same tie draw)
    equal: list[tuple[list[str], list[str]]]  # distinct (high subset, low subset) draws of equal size
    rule: str  # "categories" (the paper's) or "ranked" (the fallback)
    random_pool: str  # "analysed layers" or "all layers"
    source: str = "this run"
    notes: list[str] = field(default_factory=list)
    # ranked sets cut through tied heads: one (high, low) pair per draw of the tied heads
    ties: list[tuple[list[str], list[str]]] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # heads with CCS 5 ("high") and CCS <= 1 ("low")

    @property
    def paper_test(self) -> bool:
        """Whether these are the paper's sets (every CCS-5 head against every CCS <= 1 head)."""
        return self.rule == "categories"

    @property
    def test(self) -> str:
        """Which test these sets run: "function" (most vs least specialised heads), "paper" (the
        paper's categories) or "ranked" (the fallback when its categories are too small)."""
        return "function" if self.source == "function" else "paper" if self.paper_test else "ranked"

    def why_not_paper(self, min_size: int = 2) -> str:
        """Why the paper's test cannot be formed on these heads ('' when it can)."""
        if self.paper_test:
            return ""
        h, lo = self.counts.get("high", 0), self.counts.get("low", 0)
        return (
            f"the paper's test cannot be formed on these heads: {whose(self.source)} sets hold {h} "
            f"head{'' if h == 1 else 's'} with CCS 5 and {lo} with CCS \u2264 1, and it needs at least "
            f"{min_size} of each"
        )

    def conditions(self) -> dict[str, list[str]]:
        """Every pruning condition by name: original, high, low (high/s and low/s, one per tie draw,
        when the sets are cut through tied heads), random/s, equal-high/s, equal-low/s (the
        equal-count ones only when they differ from high and low)."""
        out = {"original": []}
        if len(self.ties) > 1:
            for s, (h, l) in enumerate(self.ties):
                out[f"high/{s}"], out[f"low/{s}"] = h, l
        else:
            out |= {"high": self.high, "low": self.low}
        out.update({f"random/{s}": r for s, r in enumerate(self.random)})
        if self.equal != [(self.high, self.low)]:  # else the equal-count comparison is high vs low itself
            for s, (h, l) in enumerate(self.equal):
                out[f"equal-high/{s}"], out[f"equal-low/{s}"] = h, l
        return out

    def summary(self) -> pd.DataFrame:
        """One row per set: its size and its heads (random and equal-count: the first draw)."""
        rows = [("high", self.high), ("low", self.low)]
        if self.random:
            rows.append((f"random ({len(self.random)} draws, e.g.)", self.random[0]))
        if self.equal:
            rows += [
                (f"equal-count high ({len(self.equal)} draws, e.g.)", self.equal[0][0]),
                (f"equal-count low ({len(self.equal)} draws, e.g.)", self.equal[0][1]),
            ]
        return pd.DataFrame([{"set": n, "heads": len(h), "names": " ".join(h)} for n, h in rows])


def order(name: str) -> tuple[int, int]:
    """Sort key of a head name: (layer, head)."""
    layer, head = name[1:].split(".H")
    return int(layer), int(head)


def _names(table: pd.DataFrame, mask) -> list[str]:
    return sorted(table.loc[mask, "name"], key=order)


def high_heads(table: pd.DataFrame, categories: Categories = PAPER) -> list[str]:
    """The paper's high heads (CCS 5)."""
    return _names(table, table["ccs"].map(categories) == "high")


def low_heads(table: pd.DataFrame, categories: Categories = PAPER, unknown: str = "exclude") -> list[str]:
    """The paper's low heads (CCS <= 1); unknown heads too with ``unknown="low"``."""
    return _names(table, scores._ccs(table, unknown).map(categories) == "low")


def concept_heads(table: pd.DataFrame, concept: str, min_ccs: float = 0) -> list[str]:
    """Heads labelled with a concept, a synonym of it, or (for the paper's groups: locations, objects,
    animals, colors) any concept of that group; optionally only those with CCS >= min_ccs."""
    target = concept.lower()
    labels = table["label"].astype(str)
    mask = labels.map(lambda l: normalise(l) == normalise(target) or group(l) == target)
    return _names(table, mask & (table["ccs"].fillna(-1) >= min_ccs))


def all_heads(layers: int, heads: int) -> list[str]:
    """The names of every head of a tower with `layers` layers of `heads` heads."""
    return [head_name(layer, h) for layer in range(layers) for h in range(heads)]


def tie_draws(table: pd.DataFrame, k: int, draws: int) -> tuple[list[tuple[list[str], list[str]]], list[str]]:
    """The k highest- and the k lowest-CCS heads (flagged heads excluded), disjoint, with the heads
    tied at a cut drawn at random: `draws` draws (draw j uses numpy's default_rng(j); one when no cut
    runs through a tie). Only the CCS decides; nothing of the labeler's breaks a tie. Returns the
    draws and notes saying where the cuts run through ties."""
    t = table[table["ccs"].notna()]
    if 2 * k > len(t):
        raise ValueError(f"cannot rank {k} high and {k} low heads out of {len(t)} scored heads")
    ccs = dict(zip(t["name"], t["ccs"]))
    names = sorted(ccs, key=order)
    desc = sorted(names, key=lambda n: -ccs[n])
    cut_high = ccs[desc[k - 1]]
    sure_high = [n for n in names if ccs[n] > cut_high]
    tied_high = [n for n in names if ccs[n] == cut_high]
    notes, out = [], []
    for j in range(draws):
        rng = np.random.default_rng(j)
        high = sure_high + [tied_high[i] for i in sorted(rng.choice(len(tied_high), k - len(sure_high), replace=False))]
        rest = [n for n in names if n not in set(high)]
        cut_low = sorted(ccs[n] for n in rest)[k - 1]
        sure_low = [n for n in rest if ccs[n] < cut_low]
        tied_low = [n for n in rest if ccs[n] == cut_low]
        low = sure_low + [tied_low[i] for i in sorted(rng.choice(len(tied_low), k - len(sure_low), replace=False))]
        draw = (sorted(high, key=order), sorted(low, key=order))
        if j == 0:
            for side, sure, tied, cut in (("high", sure_high, tied_high, cut_high), ("low", sure_low, tied_low, cut_low)):
                if len(sure) < k < len(sure) + len(tied):
                    notes.append(
                        f"The {side} set is cut through {len(tied)} heads tied at CCS {cut:g}: "
                        f"{k - len(sure)} of them are drawn at random in each of {draws} draws, "
                        "and the intervals resample the draws."
                    )
        if draw in out and len(notes) == 0:
            break  # no tie: every draw is the same
        out.append(draw)
    return out, notes


def _draws(pools: list[list[str]], sizes: list[int], n: int) -> list[tuple[list[str], ...]]:
    """`n` distinct draws (fewer when fewer exist) of sizes[i] heads from pools[i] each; draw j
    uses numpy's default_rng(j), draws repeating an earlier one are skipped. Reproducible."""
    possible = int(np.prod([comb(len(p), k) for p, k in zip(pools, sizes)]))
    out, seed = [], 0
    while len(out) < min(n, possible):
        rng = np.random.default_rng(seed)
        draw = tuple(sorted((p[i] for i in rng.choice(len(p), k, replace=False)), key=order) for p, k in zip(pools, sizes))
        if draw not in out:
            out.append(draw)
        seed += 1
    return out


def build(
    table: pd.DataFrame | None = None,
    *,
    every_head: list[str],
    analysed: list[str] | None = None,
    seeds: int = 5,
    min_size: int = 2,
    k: int | None = None,
    categories: Categories = PAPER,
    high: list[str] | None = None,
    low: list[str] | None = None,
    source: str = "this run",
) -> HeadSets:
    """The high / low / random / equal-count sets of a CCS table (or of given `high` and `low` lists,
    e.g. the paper's). `every_head`: the names of all heads of the model (the fallback pool of the
    random baseline); `analysed`: the analysed heads (default: the table's). `k` is the size of ranked
    sets (default a quarter of the scored heads, at least `min_size`). Random and equal-count sets are
    `seeds` distinct reproducible draws (see `_draws`)."""
    notes, rule, ties, counts = [], "categories", [], {"high": len(high or []), "low": len(low or [])}
    if high is None or low is None:
        if table is None:
            raise ValueError("give a CCS table, or both high and low lists")
        high, low = high_heads(table, categories), low_heads(table, categories)
        counts = {"high": len(high), "low": len(low)}
        flagged = int(table["ccs"].isna().sum())
        if flagged:
            notes.append(f"{flagged} heads are unknown (the labeler's answers failed validation): they are in no set.")
        if len(high) < min_size or len(low) < min_size:
            scored = int(table["ccs"].notna().sum())
            k = k or max(min_size, scored // 4)
            notes.append(
                f"The paper's test cannot be formed: {len(high)} heads have CCS 5 and {len(low)} have "
                f"CCS ≤ 1 (at least {min_size} of each are needed). As a secondary analysis, the "
                f"sets are ranked instead: the {k} highest and the {k} lowest CCS of the {scored} "
                "scored heads."
            )
            ties, tie_notes = tie_draws(table, k, min(seeds, TIE_DRAWS))
            notes += tie_notes
            high, low = ties[0]
            rule = "ranked"
    high, low = sorted(high, key=order), sorted(low, key=order)
    if not high or not low:
        raise ValueError(f"an empty set cannot be compared (high: {len(high)}, low: {len(low)} heads)")

    if analysed is None:
        if table is None:
            raise ValueError("give the analysed heads (or a table of them)")
        analysed = list(table["name"])
    pool = [h for h in sorted(analysed, key=order) if h not in set(high)]
    random_pool = "analysed layers"
    if comb(len(pool), len(high)) < seeds:
        notes.append(
            f"Random sets of {len(high)} heads drawn from the {len(pool)} other analysed heads "
            f"could not differ across {seeds} seeds: they are drawn from the heads of all layers "
            "instead (excluding the high set), as the paper's code does for ViT-B-32-OpenAI."
        )
        pool = [h for h in sorted(every_head, key=order) if h not in set(high)]
        random_pool = "all layers"
    if len(pool) < len(high):
        raise ValueError(f"only {len(pool)} heads are eligible for a random set of {len(high)}")
    if len(ties) > 1:  # random draw s avoids the high heads of tie draw s (the two are compared draw by draw)
        random = [
            sorted((p[i] for i in np.random.default_rng(s).choice(len(p), len(high), replace=False)), key=order)
            for s in range(seeds)
            for p in [[h for h in pool + high if h not in set(ties[s % len(ties)][0])]]
        ]
    else:
        random = [r for (r,) in _draws([pool], [len(high)], seeds)]

    m = min(len(high), len(low))
    equal = _draws([high, low], [m, m], seeds)
    if len(equal) < seeds:
        notes.append(
            f"Equal-count sets: {m} heads of each; only {len(equal)} distinct "
            + ("pair of sets exists, so it is" if len(equal) == 1 else "pairs of sets exist, so they are")
            + f" compared instead of {seeds}"
            + (" (the high and low sets themselves)." if equal == [(high, low)] else ".")
        )
    return HeadSets(high, low, random, equal, rule, random_pool, source, notes, ties if len(ties) > 1 else [], counts)


def truth_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ground-truth CCS table on the concept world: each head's label is the concept that generated
    most of its texts and its CCS the number of its texts generated by that concept (the pool lines
    carry their concept, in the ``concepts`` column of `scores.score_heads`' table)."""
    from ccs.llm import same

    if "concepts" not in table:
        raise ValueError("the table carries no ground-truth concepts (only the world pool has them)")
    t = table.drop(columns=["confidence"], errors="ignore")  # nothing of the labeler's may break a tie
    t["label"] = t["concepts"].map(scores.majority_concept)
    t["ccs"] = [float(sum(same(c, lab) for c in cs)) for cs, lab in zip(t["concepts"], t["label"])]
    t["flagged"] = False
    return t


def published(model: str) -> dict[str, list[str]]:
    """The paper's published head lists of a paper model: high, low and concept groups."""
    from ccs.models import paper

    heads = paper()["heads"]
    if model not in heads:
        raise KeyError(f"the paper publishes no head lists for {model!r} (it does for {', '.join(heads)})")
    return {k: list(v) for k, v in heads[model].items()}


def jaccard(a, b) -> float:
    """|a & b| / |a | b| of two head sets (1 when both are empty)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def label_table(labels: str, table: pd.DataFrame, model: str) -> pd.DataFrame:
    """The heads' concept labels by source: ``run`` (this run's labeler), ``truth`` (the concept world's,
    `truth_table`) or ``paper`` (a paper model's published concept groups, as CCS-5 heads)."""
    if labels == "run":
        return table
    if labels == "truth":
        return truth_table(table)
    if labels == "paper":
        return pd.DataFrame(
            [
                {"name": n, "label": c, "ccs": 5.0}
                for c, heads in published(model).items()
                if c not in ("high", "low")
                for n in heads
            ]
        )
    raise ValueError(f"labels must be 'run', 'truth' or 'paper', not {labels!r}")


def concept_sets(table: pd.DataFrame, *, seeds: int = 5, min_heads: int = 1) -> dict[str, dict]:
    """For every concept that owns heads by label (synonyms merged): its heads, and per seed an
    equal-count random control drawn from the other scored heads.
    {concept: {"heads": [...], "random": [[...] per seed]}}, concepts in alphabetical order."""
    t = table[table["ccs"].notna()]
    out = {}
    for concept in sorted({normalise(l) or str(l) for l in t["label"]}):
        heads = concept_heads(t, concept)
        others = sorted((n for n in t["name"] if n not in set(heads)), key=order)
        if len(heads) < min_heads or len(others) < len(heads):
            continue
        out[str(concept)] = {"heads": heads, "random": [r for (r,) in _draws([others], [len(heads)], seeds)]}
    return out


PAPER_SHARES = (8 / 48, 4 / 48)  # ViT-B-32-OpenAI: 8 high and 4 low of its 48 analysed heads


def function_sets(function: pd.DataFrame, *, every_head: list[str], seeds: int = 5) -> HeadSets:
    """The third source of sets, from what heads compute (`scores.head_function`, indexed by head
    name): the most specialised heads against the least, in the paper's proportions (`PAPER_SHARES`,
    at least 2 each); no labeler and no text enters."""
    share = function["share"].fillna(-1.0)
    n = len(share)
    k_high, k_low = (max(2, round(n * f)) for f in PAPER_SHARES)
    ranked_names = sorted(share.index, key=lambda h: (-share[h], order(h)))
    high, low = ranked_names[:k_high], ranked_names[::-1][:k_low]
    hs = build(high=high, low=low, analysed=list(share.index), every_head=every_head, seeds=seeds, source="function")
    hs.notes.insert(
        0,
        f"Function sets: the {k_high} heads whose top world attribute owns the largest share of "
        f"what all attributes explain of their output, against the {k_low} with the smallest (the "
        "paper's proportions, 8 high and 4 low of 48 heads).",
    )
    return hs


def from_source(
    source: str, table: pd.DataFrame, *, model: str, every_head: list[str], seeds: int = 5, function: pd.DataFrame | None = None
) -> HeadSets:
    """The sets of a notebook's ``sets`` parameter: ``run`` (this run's CCS table), ``truth`` (the
    concept world's true CCS, see `truth_table`), ``function`` (what the heads compute, see
    `function_sets`; give `function`) or ``paper`` (the published lists of a paper model, with the
    table's heads as the analysed ones)."""
    if source == "function":
        if function is None:
            raise ValueError(
                "sets='function' needs the heads' function (scores.head_function), which only the concept world's images give"
            )
        return function_sets(function, every_head=every_head, seeds=seeds)
    if source == "run":
        return build(table, every_head=every_head, seeds=seeds)
    if source == "truth":
        if "concepts" not in table:
            raise ValueError("sets='truth' needs a pool with ground truth (pool='world'); use 'run' or 'paper'")
        return build(truth_table(table), every_head=every_head, seeds=seeds, source="ground truth")
    if source == "paper":
        pub = published(model)
        return build(
            high=pub["high"], low=pub["low"], analysed=list(table["name"]), every_head=every_head, seeds=seeds, source="paper"
        )
    raise ValueError(f"sets must be 'run', 'truth', 'function' or 'paper', not {source!r}")


def other_source(sets: str, table: pd.DataFrame, *, model: str, every_head: list[str], seeds: int = 5) -> HeadSets | None:
    """The sets a page shows beside those of its ``sets`` parameter: the ground truth's beside this
    run's and this run's beside the ground truth's; None when the pool carries no ground truth or the
    sets are the paper's."""
    if "concepts" not in table or sets not in ("run", "truth"):
        return None
    return from_source({"run": "truth", "truth": "run"}[sets], table, model=model, every_head=every_head, seeds=seeds)


def beside_paper(sets: list[HeadSets], heads: int) -> pd.DataFrame:
    """How many heads each source puts in the paper's categories (CCS 5, CCS <= 1), beside the
    paper's six models (paper.yaml's head_counts), with the share of the analysed heads."""
    from ccs.models import paper

    rows = [
        {
            "source": f"this model, {whose(s.source)} sets",
            "analysed heads": heads,
            "CCS 5": s.counts.get("high", 0),
            "CCS \u2264 1": s.counts.get("low", 0),
            "paper's test": "yes" if s.paper_test else "cannot be formed",
        }
        for s in sets
        if s.source != "function"
    ]
    for name, c in paper()["head_counts"].items():
        n = paper()["models"][name]["heads"] * len(paper()["models"][name]["analysed_layers"])
        rows.append(
            {"source": f"paper, {name}", "analysed heads": n, "CCS 5": c["high"], "CCS \u2264 1": c["low"], "paper's test": "yes"}
        )
    out = pd.DataFrame(rows)
    out["CCS 5 %"] = 100 * out["CCS 5"] / out["analysed heads"]
    out["CCS \u2264 1 %"] = 100 * out["CCS \u2264 1"] / out["analysed heads"]
    return out.set_index("source")


def headline(s: HeadSets) -> str:
    """Which comparison a page's verdict is about, in words."""
    if s.paper_test:
        return (
            f"the paper's test: all {len(s.high)} CCS-5 heads against all {len(s.low)} CCS \u2264 1 heads "
            f"({whose(s.source)} sets)"
        )
    drawn = f", tied heads drawn in {len(s.ties)} draws" if s.ties else ""
    return (
        f"{s.why_not_paper()}; a secondary analysis instead: the {len(s.high)} highest- against the "
        f"{len(s.low)} lowest-CCS heads{drawn}"
    )


def verdict_text(s: HeadSets, verdict: str) -> str:
    """A page's verdict as its glue says it: on the paper's test, the verdict; on ranked sets, that it
    is the secondary analysis's, so no sentence can pass it off as the paper's test."""
    return verdict if s.paper_test else f"{verdict} (ranked sets: the paper's test cannot be formed here)"
