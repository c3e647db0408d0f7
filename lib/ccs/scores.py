"""The Concept Consistency Score: per head, how many of its 5 TextSpan texts match its concept label.

CCS(h) in 0..5; categories as in the paper (high = 5, moderate = 3, low <= 1; configurable);
CCS@K = share of heads with CCS == K (the sets pruned are built in ccs.headsets); agreement between
judges (Cohen's kappa, Spearman, Kendall); accuracy of the labeler
and the judge against ground truth; and the text-free check on the concept world, the share of a
head's direct-contribution variance explained by each ground-truth attribute (R^2).

Every head gets a label, as in the paper (its LLM always names one concept): a head whose texts share
no concept is judged low, not dropped. Only a head whose LLM answers fail validation after the
retries is labelled ``unknown``: it is flagged and gets no CCS (NaN), is neither scored low nor
counted in CCS@K (unless a caller asks for ``unknown="low"``), and the pages report how many there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import cohen_kappa_score

from ccs.llm import UNKNOWN, Backend, InvalidAnswer, same


def head_name(layer: int, head: int) -> str:
    """The paper's head name, e.g. L11.H5 (0-indexed)."""
    return f"L{layer}.H{head}"


def score_head(texts: Sequence[str], backend: Backend) -> dict:
    """Label a head from its texts, judge each text against the label, and count the matches.
    Backends that can say how well their label fits (the embedding one) add ``confidence``.
    A head whose label or any judgement got no valid answer (``unknown``, InvalidAnswer) is flagged
    and gets no CCS (a judgement without an answer counts 0 in ``judgements``)."""
    label = backend.label(texts)
    judgements, invalid = [], label == UNKNOWN
    for t in texts:
        try:
            judgements.append(0 if label == UNKNOWN else int(backend.judge(t, label)))
        except InvalidAnswer:  # counted by the backend, which stops the run when too many fail
            judgements.append(0)
            invalid = True
    out = {
        "label": label,
        "judgements": judgements,
        "ccs": float("nan") if invalid else float(sum(judgements)),
        "flagged": invalid,
    }
    if hasattr(backend, "confidence") and label != UNKNOWN:
        out["confidence"] = backend.confidence(texts)
    return out


def _prefetch(backend: Backend, texts: list[str]) -> None:
    if hasattr(backend, "prefetch"):  # the embedding backend embeds all texts in one batch
        backend.prefetch(texts)


def score_heads(heads: Iterable[Mapping], backend: Backend) -> pd.DataFrame:
    """One row per head: layer, head, name, texts, label, judgements, ccs, flagged.

    `heads` yields records with at least ``layer``, ``head`` and ``texts`` (TextSpan's output)."""
    heads = list(heads)
    _prefetch(backend, [t for h in heads for t in h["texts"]])
    if hasattr(backend, "expect"):  # an LLM backend stops early when too many answers fail validation
        backend.expect(labels=len(heads), judgements=sum(len(h["texts"]) for h in heads))
    rows = []
    for h in heads:
        extra = {k: v for k, v in h.items() if k not in ("layer", "head", "texts")}  # e.g. concepts
        rows.append(
            {
                "layer": int(h["layer"]),
                "head": int(h["head"]),
                "name": head_name(h["layer"], h["head"]),
                "texts": list(h["texts"]),
                **score_head(h["texts"], backend),
                **extra,
            }
        )
    if hasattr(backend, "check_answers"):  # too many invalid answers fail the run; a few are logged
        backend.check_answers()
    return pd.DataFrame(rows)


# --- categories and CCS@K ------------------------------------------------------------------------


@dataclass(frozen=True)
class Categories:
    """CCS thresholds of the categories; the paper's: high == 5, moderate == 3, low <= 1."""

    high: int = 5  # CCS >= high
    moderate: tuple[int, ...] = (3,)  # CCS in moderate
    low: int = 1  # CCS <= low

    def __call__(self, ccs: float) -> str | None:
        if ccs != ccs:  # NaN: an unknown head
            return UNKNOWN
        if ccs >= self.high:
            return "high"
        if ccs <= self.low:
            return "low"
        return "moderate" if int(ccs) in self.moderate else None


PAPER = Categories()


def category(ccs: float, categories: Categories = PAPER) -> str | None:
    """high / moderate / low / unknown (NaN), or None for a CCS in no category (2 and 4 in the paper)."""
    return categories(ccs)


def _ccs(table: pd.DataFrame | Sequence[float], unknown: str) -> pd.Series:
    s = pd.Series(table["ccs"] if isinstance(table, pd.DataFrame) else table, dtype=float)
    if unknown == "low":
        return s.fillna(0.0)
    if unknown != "exclude":
        raise ValueError("unknown must be 'exclude' or 'low'")
    return s


def category_counts(table, categories: Categories = PAPER, unknown: str = "exclude") -> dict[str, int]:
    """Heads per category, e.g. {'high': 8, 'moderate': 13, 'low': 4, 'unknown': 2}."""
    cats = _ccs(table, unknown).map(categories)
    return {k: int((cats == k).sum()) for k in ("high", "moderate", "low", UNKNOWN)}


def ccs_at(table, k: int, unknown: str = "exclude") -> float:
    """CCS@K: the share of scored heads whose CCS equals k."""
    s = _ccs(table, unknown).dropna()
    return float((s == k).mean()) if len(s) else float("nan")


def ccs_at_all(table, n_texts: int = 5, unknown: str = "exclude") -> dict[int, float]:
    """CCS@K for K = 0..n_texts."""
    return {k: ccs_at(table, k, unknown) for k in range(n_texts + 1)}


# --- agreement and ground truth ------------------------------------------------------------------


def agreement(a: Sequence, b: Sequence) -> dict[str, float]:
    """Agreement of two raters over the same items (0/1 judgements or CCS values): Cohen's kappa,
    Spearman's rho and Kendall's tau (NaN where undefined, e.g. a constant rater)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("two equally long 1-d sequences are needed")
    with np.errstate(all="ignore"):
        kappa = cohen_kappa_score(a, b) if len(set(a) | set(b)) > 1 else 1.0
        rho = spearmanr(a, b).statistic
        tau = kendalltau(a, b).statistic
    return {"cohen_kappa": float(kappa), "spearman": float(rho), "kendall": float(tau)}


def accuracy(predicted: Sequence, truth: Sequence) -> float:
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    return float((predicted == truth).mean()) if len(truth) else float("nan")


def label_accuracy(labels: Sequence[str], truth: Sequence[str]) -> float:
    """Share of labels naming the true concept (synonyms and a narrower concept of its family, e.g.
    bird for animal, count as the same concept; see ccs.llm.same)."""
    return float(np.mean([same(l, t) for l, t in zip(labels, truth)])) if len(truth) else float("nan")


def majority_concept(concepts: Sequence[str]) -> str:
    """The ground-truth label of a head: the concept that generated most of its texts (ties: first)."""
    values, counts = np.unique(np.asarray(concepts), return_counts=True)
    best = counts.max()
    return next(c for c in concepts if counts[list(values).index(c)] == best)


def majority_concepts(concepts: Sequence[str]) -> list[str]:
    """Every concept that generated most of a head's texts: a head whose texts split 2-2-1 has two
    right labels (`majority_concept` picks the first of them)."""
    values, counts = np.unique(np.asarray(concepts), return_counts=True)
    return [str(v) for v, n in zip(values, counts) if n == counts.max()]


def evaluate(backend: Backend, heads: Sequence[dict]) -> dict:
    """Measure a labeler/judge on labelled heads ({concept, texts, truth} records, see
    ccs.llm.load_heads): label accuracy on the heads that share a concept; for the heads that share
    none, the share that comes out low (CCS <= 1), as they should; the judge's accuracy and kappa
    against the per-text truth when judging the intended concept; and the mean absolute error of the
    end-to-end CCS (label, then judge; a flagged head counts 0)."""
    labels, judged, truth, ccs_pred, ccs_true = [], [], [], [], []
    _prefetch(backend, [t for h in heads for t in h["texts"]])
    for h in heads:
        r = score_head(h["texts"], backend)
        labels.append(r["label"])
        ccs_pred.append(0 if r["flagged"] else r["ccs"])
        ccs_true.append(sum(h["truth"]))
        if h["concept"] != UNKNOWN:
            judged += [backend.judge(t, h["concept"]) for t in h["texts"]]
            truth += h["truth"]
    named = [i for i, h in enumerate(heads) if h["concept"] != UNKNOWN]
    incoherent = [ccs_pred[i] for i, h in enumerate(heads) if h["concept"] == UNKNOWN]
    return {
        "heads": len(heads),
        "label_accuracy": label_accuracy([labels[i] for i in named], [heads[i]["concept"] for i in named]),
        "incoherent_low": float(np.mean(np.array(incoherent) <= PAPER.low)) if incoherent else float("nan"),
        "flagged": int(sum(l == UNKNOWN for l in labels)),
        "judge_accuracy": accuracy(judged, truth),
        "judge_kappa": float(cohen_kappa_score(truth, judged)),
        "ccs_mae": float(np.mean(np.abs(np.subtract(ccs_pred, ccs_true)))),
        "ccs_spearman": float(spearmanr(ccs_pred, ccs_true).statistic),
        "labels": labels,
    }


def ground_truth(table: pd.DataFrame) -> dict:
    """Labeler and judge against the concept world's ground truth (a `score_heads` table whose records
    carry ``concepts``, the generating concept of each text).

    label accuracy: label == a majority concept of the head's texts (either of two tied ones; unknown
    heads count wrong);
    judge: per text of a labelled head, judgement vs (the text's concept == the label), accuracy and
    Cohen's kappa; true CCS: texts generated by the majority concept, vs CCS (MAE, Spearman)."""
    truth = table["concepts"].map(majority_concept)
    known = ~table["flagged"]
    judged = [
        (j, int(same(c, lab)))
        for lab, js, cs in zip(table.loc[known, "label"], table.loc[known, "judgements"], table.loc[known, "concepts"])
        for j, c in zip(js, cs)
    ]
    pred, true = [j for j, _ in judged], [t for _, t in judged]
    true_ccs = [sum(same(c, m) for c in cs) for cs, m in zip(table["concepts"], truth)]
    ccs = table["ccs"].fillna(0)
    with np.errstate(all="ignore"):
        rho = spearmanr(ccs, true_ccs).statistic if len(table) > 1 else float("nan")
    return {
        "heads": len(table),
        "flagged": int((~known).sum()),
        "label_accuracy": float(
            np.mean([any(same(lab, m) for m in majority_concepts(cs)) for lab, cs in zip(table["label"], table["concepts"])])
        ),
        "judge_accuracy": accuracy(pred, true),
        "judge_kappa": float(cohen_kappa_score(true, pred)) if len(set(true) | set(pred)) > 1 else float("nan"),
        "ccs_mae": float(np.mean(np.abs(ccs - np.array(true_ccs)))),
        "ccs_spearman": float(rho),
    }


def attribute_r2(contributions: np.ndarray, attributes: pd.DataFrame) -> pd.DataFrame:
    """Share of each head's direct-contribution variance explained by each ground-truth attribute.

    contributions: [N images, H heads, D] (or [N, D] for one head); attributes: N rows, one column per
    concept with the images' (categorical) values. R^2 of attribute a for head h is the between-group
    sum of squares over the total, summed over the D dimensions (one-way ANOVA on the vector output):
    1 when the head's output is a function of the attribute, ~0 when unrelated.
    Returns a [H, concepts] table."""
    x = np.asarray(contributions, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None, :]
    centred = x - x.mean(0, keepdims=True)
    total = (centred**2).sum(axis=(0, 2))  # [H]
    out = {}
    for col in attributes.columns:
        codes = pd.factorize(attributes[col])[0]
        means = np.zeros((codes.max() + 1, *x.shape[1:]))
        np.add.at(means, codes, centred)
        counts = np.bincount(codes)
        between = ((means**2).sum(axis=2) / counts[:, None]).sum(0)  # sum_g n_g |mean_g|^2
        out[col] = between / np.where(total > 0, total, np.nan)
    return pd.DataFrame(out)


SPECIALISED = 0.6  # a head is specialised when its top attribute owns this share of what all explain


def specialisation(r2: pd.DataFrame) -> pd.DataFrame:
    """Per head of an `attribute_r2` table: its top attribute, that attribute's R^2, and its *share*
    of the R^2 of all attributes (the functional specialisation score: 1 when one attribute explains
    all that the world's attributes explain; NaN for a head they explain nothing of)."""
    total = r2.sum(axis=1)
    return pd.DataFrame(
        {"top": r2.idxmax(axis=1), "top_r2": r2.max(axis=1), "share": r2.max(axis=1) / total.where(total > 0)}, index=r2.index
    )


def head_function(decomposition, attributes: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """What each analysed head computes, by the concept world's ground truth: the R^2 of every
    attribute (`attribute_r2` of its direct contributions) and its specialisation, indexed by head
    name (`names` in the decomposition's layer-major order)."""
    h = np.asarray(decomposition.heads)  # [N, K, H, D]
    r2 = attribute_r2(h.reshape(h.shape[0], -1, h.shape[-1]), attributes)
    r2.index = list(names)
    return pd.concat([r2, specialisation(r2)], axis=1)


def top_r2_agreement(labels: Sequence[str], r2: pd.DataFrame) -> float:
    """How often a head's label names its top-R^2 attribute (over heads with a known label)."""
    top = r2.idxmax(axis=1)
    pairs = [(l, t) for l, t in zip(labels, top) if l != UNKNOWN]
    return label_accuracy([p for p, _ in pairs], [t for _, t in pairs]) if pairs else float("nan")
