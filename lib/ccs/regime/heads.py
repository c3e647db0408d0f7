"""What the specialised heads of the study's runs encode, and where their TextSpan texts come from:
grouped by top attribute (`by_attribute`), the share of texts about a concept (`text_share`), and the
runs trained at both lengths (`short_and_full`)."""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pandas as pd

from ccs import scores
from ccs.regime.rule import is_short


def n_values(concept: str, variant: str) -> int:
    """How many values a world attribute has in a world variant (e.g. shape: 8 in base, 16 in rich)."""
    from ccs.world import concepts

    base = concepts._BASE.get(concept, concepts.VOCAB[concept])  # _BASE: shape and scene before `use`
    return len(base) + len(concepts.VARIANTS[variant].get(concept, []))


@cache
def text_concepts(variant: str) -> dict[str, str]:
    """Each line of a world variant's pool (the one `measure` reads) -> the concept it was written for."""
    from ccs import pools, world

    before = world.current()
    world.use(variant)
    try:
        pool = pools.world()
    finally:
        world.use(before)
    return dict(zip(pool.texts, pool.concepts))


def specialised_heads(rows: list[dict]) -> pd.DataFrame:
    """The specialised heads of `rows`: world, top attribute, true CCS and the concept of each text."""
    return pd.DataFrame(
        [
            {
                "world": (w := r.get("world", "base")),
                "attribute": h["top"],
                "true_ccs": h["true_ccs"],
                "texts": [text_concepts(w).get(t, "?") for t in h.get("texts", [])],
            }
            for r in rows
            for h in r["per_head"]
            if h["share"] >= scores.SPECIALISED
        ],
        columns=["world", "attribute", "true_ccs", "texts"],
    )


def by_attribute(rows: list[dict]) -> pd.DataFrame:
    """The specialised heads of every measured run, grouped by their top attribute and world: how many
    values the attribute has, how consistent the heads' texts are (true CCS), what share of their texts
    is about the attribute, and which other concept gives most of the rest. Asks whether a head that
    encodes an attribute of 2-3 values can find five texts about it."""
    heads = specialised_heads(rows)
    groups = heads.groupby(["attribute", "world"])
    out = groups["true_ccs"].agg(heads="size", mean="mean", highest="max", ccs5=lambda s: 100 * (s == 5).mean())
    mix = groups.apply(_text_mix, include_groups=False)
    out = pd.concat([out, mix], axis=1).reset_index()
    out.insert(2, "values", [n_values(a, w) for a, w in zip(out["attribute"], out["world"])])
    return out.sort_values(["values", "attribute", "world"], kind="stable").reset_index(drop=True)


def _text_mix(g: pd.DataFrame) -> pd.Series:
    """Of a group's texts: the share about its attribute, and the other concept most of the rest is about."""
    concepts = Counter(c for texts in g["texts"] for c in texts)
    n, own = sum(concepts.values()), concepts.pop(g.name[0], 0)
    other, k = concepts.most_common(1)[0] if concepts else ("", 0)
    return pd.Series({"own": 100 * own / n if n else np.nan, "other": other, "other_share": 100 * k / n if n else np.nan})


def short_and_full(rows: list[dict]) -> list[tuple[dict, dict]]:
    """Each configuration trained both for the short budget and at full length: (short, full)."""
    short = {r["configuration"]: r for r in rows if is_short(r)}
    return [(short[r["recipe"]], r) for r in rows if r.get("full") and r.get("recipe") in short]


def text_share(rows: list[dict], attribute: str, concept: str) -> float:
    """The share (%) of the texts of the specialised heads that encode `attribute` written for `concept`."""
    heads = specialised_heads(rows)
    texts = [c for texts in heads.loc[heads["attribute"] == attribute, "texts"] for c in texts]
    return 100 * texts.count(concept) / len(texts) if texts else float("nan")
