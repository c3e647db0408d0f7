"""One model's analysis, as every set-based page (pruning, concepts, OOD, video) starts from it: the
TextSpan decomposition, the labels and the judge's CCS, what each head computes, and every source of
head sets, built by one call (`load`) with the model's name, module and tokenizer travelling together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ccs import headsets, llm, models, scores, textspan


@dataclass
class Study:
    model: str  # the model's name
    weights: str  # "trained" or "random"
    analysis: textspan.Analysis  # the decomposition; .model and .tokenizer are the loaded model
    labeler: object  # the labeler and judge that scored the heads
    table: pd.DataFrame  # one row per analysed head: label, CCS (and the world's truth where known)
    function: pd.DataFrame | None  # what each head computes (the world's images only)
    every: list[str]  # every head of the model (the random sets' pool when the layers are all analysed)
    sets: headsets.HeadSets  # the page's own sets (its `sets` parameter)
    other: headsets.HeadSets | None = None  # the other text source beside them (ground truth <-> this run)
    fn: headsets.HeadSets | None = None  # the function sets beside them (unless the page's own are those)
    spec: models.ModelSpec | None = field(default=None, repr=False)

    @property
    def module(self):
        return self.analysis.model

    @property
    def tokenizer(self):
        return self.analysis.tokenizer

    @property
    def truth(self) -> pd.DataFrame | None:
        """The heads scored by the world's ground truth (None where the pool has none)."""
        return headsets.truth_table(self.table) if "concepts" in self.table else None

    def sources(self) -> list[tuple[str, headsets.HeadSets]]:
        """(condition prefix, sets) of every source: the page's own unprefixed, the others prefixed
        with their source's name ("ground truth: high", "function: random/2")."""
        return [("", self.sets)] + [(f"{s.source}: ", s) for s in (self.other, self.fn) if s is not None]

    def conditions(self, equal: bool = True) -> dict[str, list[str]]:
        """Every source's pruning conditions, prefixed as in `sources`; without the equal-count draws
        when `equal` is False. "original" once."""
        out = {}
        for prefix, s in self.sources():
            out |= {
                prefix + k: v
                for k, v in s.conditions().items()
                if (equal or not k.startswith("equal")) and not (prefix and k == "original")
            }
        return out

    def beside_paper(self) -> pd.DataFrame:
        """This model's heads in the paper's categories, by each text source, beside the paper's six."""
        return headsets.beside_paper([s for _, s in self.sources()], len(self.table))

    def concept_sets(self, labels: str = "run", seeds: int = 20) -> list[tuple[str, str, dict]]:
        """(label source, condition prefix, `headsets.concept_sets`): the page's `labels` (run, truth or
        paper) unprefixed and, where the pool has ground truth, the other text source's ("truth: " or
        "run: ") and the function's ("function: ": each head labelled by the attribute it computes)."""
        out = [(labels, "", headsets.concept_sets(headsets.label_table(labels, self.table, self.model), seeds=seeds))]
        if "concepts" in self.table:
            other = {"run": "truth", "truth": "run"}.get(labels)
            if other:
                out.append(
                    (other, f"{other}: ", headsets.concept_sets(headsets.label_table(other, self.table, self.model), seeds=seeds))
                )
            by_function = self.table.assign(label=self.function["top"].reindex(self.table["name"]).to_numpy())
            out.append(("function", "function: ", headsets.concept_sets(by_function, seeds=seeds)))
        return out

    def describe(self) -> str:
        """The sets in words: which test they run, their heads, and those of the sources beside them."""
        s = self.sets
        lines = [
            f"sets from: {s.source} ({headsets.headline(s)}); high: {' '.join(s.high)}; low: {' '.join(s.low)}; "
            f"{len(s.random)} random draws from the {s.random_pool}"
        ]
        if self.other is not None:
            o = self.other
            lines.append(
                f"beside them, {headsets.whose(o.source)} sets ({o.rule}): high {' '.join(o.high)}; low {' '.join(o.low)}"
            )
        if self.fn is not None:
            lines.append(
                f"and the function sets: the {len(self.fn.high)} most specialised heads {' '.join(self.fn.high)}; "
                f"the {len(self.fn.low)} least {' '.join(self.fn.low)}"
            )
        return "\n".join(lines)


def concept_conditions(sources: list[tuple[str, str, dict]]) -> dict[str, list[str]]:
    """The pruning conditions of `Study.concept_sets`: per source and concept, its heads and its random
    controls ("colour", "colour-random/0" ..., prefixed by source), after the unpruned "original"."""
    out = {"original": []}
    for _, prefix, sets in sources:
        for c, v in sets.items():
            out[prefix + c] = v["heads"]
            out.update({f"{prefix}{c}-random/{s}": h for s, h in enumerate(v["random"])})
    return out


def load(
    model: str,
    *,
    weights: str = "trained",
    images: int,
    pool: str,
    texts: int,
    seed: int,
    backend: str,
    calibration: str,
    sets: str = "run",
    seeds: int = 20,
    side: int | None = None,
) -> Study:
    """Analyse `model` (cached), label and judge its heads, and build the page's sets (`sets`: run,
    truth, function or paper, with `seeds` random draws) and those beside them (`side` draws, at
    most `headsets.SECONDARY_DRAWS`)."""
    analysis = textspan.analyse(
        model, images=images, pool=pool, texts=texts, seed=seed, progress=False, untrained=weights == "random"
    )
    labeler = llm.make(backend, pool=pool, calibration=calibration, scored=model)
    table = scores.score_heads(analysis.records(), labeler)
    spec = models.spec(model)
    every = headsets.all_heads(spec.layers, spec.heads)
    function = (
        scores.head_function(analysis.decomposition, analysis.batch.attributes, table["name"]) if "concepts" in table else None
    )  # what each head computes, by the world's ground truth
    own = headsets.from_source(sets, table, model=model, every_head=every, seeds=seeds, function=function)
    side = min(seeds, headsets.SECONDARY_DRAWS) if side is None else side
    other = headsets.other_source(sets, table, model=model, every_head=every, seeds=side)
    fn = headsets.function_sets(function, every_head=every, seeds=side) if function is not None and sets != "function" else None
    return Study(model, weights, analysis, labeler, table, function, every, own, other, fn, spec)
