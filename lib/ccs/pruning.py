"""Soft-pruning experiments: zero-shot tasks measured per image under pruning conditions, conditions
compared with paired bootstrap intervals (`ccs.intervals`), and the soft-pruning page's claims (their
verdicts: `ccs.verdicts`; the concept-specific page's claims: `ccs.concept_pruning`).

A *condition* is a named set of heads to prune (``original`` prunes none). Conditions whose names
share a prefix before ``/`` form a *group* (``random/0`` ... ``random/4``): a group's per-image score
is the mean over its members, and `Results.seeds` gives the spread of its members. Every score is
kept per image (NaN where a task does not apply), so any two conditions can be compared on the same
images with `intervals.paired_ci`.

Image embeddings are cached on disk by the weights the model has *as pruned* (its fingerprint inside
the ``with ablate.pruned(...)`` block) and the images, text classifiers by the model and the prompts:
the pruning and concept pages share the unpruned work, and a re-run costs seconds. What is computed
starts at each condition's first pruned layer: `run` takes the conditions in that order (`by_first_layer`)
on one `stream` of the images, so every unpruned block before a pruning runs once for all of them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ccs import ablate, evaluate, fingerprints, intervals
from ccs.cache import checked
from ccs.evalset import EvalSet  # defined below ccs.datasets and this module: data flows one way

MEASURES = {"correct": "top-1 accuracy", "p_true": "probability of the true class"}
# Per image and task, also kept for every image (labelled or not): the maximum concept matching score
# (ccs.evaluate.mcm_scores) against the task's class prompts, the OOD detection score.
DETECTION = "mcm"
# Tasks that a shifted split makes meaningless: sketches draw outlines only, so no texture is visible.
NOT_APPLICABLE = {"sketch": ("texture",)}


def world_sets(n: int, seed: int, splits=("test",)) -> dict[str, EvalSet]:
    """Concept-world evaluation sets: every concept task on each split where it applies. The shifted
    splits share the test split's attributes for a seed, so their scores pair image by image."""
    from ccs import world

    out = {}
    for split in splits:
        batch = world.sample(n, seed, split)
        out[split] = EvalSet(
            split,
            batch.images,
            {
                name: task.labels(batch.attributes)
                for name, task in world.tasks().items()
                if name not in NOT_APPLICABLE.get(split, ())
            },
        )
    return out


@dataclass
class RealSets:
    """The paper's datasets a page could read: their evaluation sets and tasks, and why the others
    are missing."""

    sets: dict = field(default_factory=dict)  # name -> EvalSet
    tasks: dict = field(default_factory=dict)  # name -> ccs.world.Task-like (classnames, templates)
    missing: dict = field(default_factory=dict)  # name -> why not


def real_sets(model: str, names, n: int, seed: int) -> RealSets:
    """Load those of the paper's classification datasets `names` that are on disk (`n` images each),
    for a paper model; ccs-tiny (trained on the concept world only) reads none."""
    from ccs import datasets, models, world

    out = RealSets()
    for name in names:
        if models.spec(model).embedded:
            out.missing[name] = f"{model} knows only the concept world"
            continue
        info = datasets.info(name)
        if not info["present"]:
            out.missing[name] = f"not on disk at {info['path']}; {info['how']}"
            continue
        evalset, classnames, templates = datasets.load_classification(name, n=n, seed=seed)
        out.sets[name] = evalset
        out.tasks[name] = world.Task(name, list(classnames), list(templates))
    return out


def beside(published: dict, run: dict | None, names) -> pd.DataFrame:
    """A paper table {model: {dataset: [values per condition]}} as rows (model, dataset) with columns
    ``paper: <name>``, and, unless `run` is None, ``this run: <name>`` from `run` (the same shape),
    blank (NaN) where the run has no number."""
    rows = []
    for m, per in published.items():
        for ds, values in per.items():
            row = {"model": m, "dataset": ds, **{f"paper: {n}": v for n, v in zip(names, values)}}
            if run is not None:
                mine = (run.get(m) or {}).get(ds)
                row.update(
                    {
                        f"this run: {n}": (
                            float(mine[i]) if mine is not None and i < len(mine) and mine[i] is not None else float("nan")
                        )
                        for i, n in enumerate(names)
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "dataset"])


def run_values(r: Results, measured, names=("original", "high", "low")) -> dict[str, list[float]]:
    """This run's top-1 % of the conditions `names` on each dataset it `measured`: {dataset: [values]},
    the shape of one model's row of a paper table (what a page stores under ``paper_tables``)."""
    return {ds: [100 * r.value(n, ds, "correct") for n in names] for ds in measured}


def beside_paper(
    published: dict, model: str, r: Results, measured, names=("original", "high", "low"), embedded: bool = False
) -> pd.DataFrame:
    """The paper's table {model: {dataset: [values per condition]}} (top-1 %), with this run's top-1 %
    of the same conditions beside it for `model` on the datasets it `measured`, blank elsewhere."""
    mine = run_values(r, [d for d in measured if d in published.get(model, {})], names)
    return beside(published, None if embedded else {model: mine}, names)


def noise_set(n: int, seed: int, like: EvalSet) -> EvalSet:
    """`n` images of uniform pixel noise, the size of `like`'s, with no class in any of its tasks
    (out-of-distribution inputs for detection)."""
    g = torch.Generator().manual_seed(int(seed))
    images = torch.randint(0, 256, (n, *like.images.shape[1:]), generator=g, dtype=torch.uint8)
    return EvalSet("noise", images, {t: np.full(n, -1) for t in like.labels})


def _cached_tensor(kind: str, key: list, compute) -> torch.Tensor:
    """`compute()` (a tensor) through the checked array cache (`ccs.cache.checked`): stored with its
    checksum, and a damaged file is reported (CacheWarning with its path) and recomputed, never used."""
    return torch.from_numpy(checked(kind, key, lambda: compute().detach().cpu().numpy(), f"pruning {kind.replace('-', ' ')}"))


def classifiers(model_name: str, model, tokenizer, tasks: Mapping) -> dict[str, torch.Tensor]:
    """The zero-shot classifier of every task (cached by the model's weights and the prompts). The text
    tower is never pruned, so one set of classifiers serves every condition."""
    fp = fingerprints.fingerprint(model)
    return {
        name: _cached_tensor(
            "classifiers",
            [model_name, fp, list(t.classnames), list(t.templates)],
            lambda t=t: evaluate.zero_shot_classifier(model, tokenizer, list(t.classnames), list(t.templates)),
        )
        for name, t in tasks.items()
    }


def stream(model, images: torch.Tensor) -> ablate.UnprunedStream | None:
    """What lets the prunings of `images` share the unpruned model's first layers (`ablate.UnprunedStream`),
    or None where the tower is not one it reproduces or the images' stream would not fit in memory."""
    return ablate.UnprunedStream(model, images) if ablate.UnprunedStream.supported(model, len(images)) else None


def by_first_layer(model, conditions: Mapping[str, list]) -> list[str]:
    """The conditions' names in the order of their first pruned layer (stably; unpruned last), the
    order in which an `ablate.UnprunedStream` runs each unpruned block once."""
    return sorted(conditions, key=lambda c: ablate.first_layer(model, conditions[c]))


def embeddings(model_name: str, model, images: torch.Tensor, shared=None, heads=()) -> torch.Tensor:
    """Normalised image embeddings of the model as it is now (pruned or not), cached on disk by its
    weights and the images (checked when read, see `_cached_tensor`). With `shared` (`stream` of these
    images), a forward that is computed starts at the first layer of `heads`, the heads pruned now."""
    visual = fingerprints.fingerprint(getattr(model, "visual", model))  # pruning edits the image tower only
    key = fingerprints.images_hash(images)
    compute = (lambda: shared.embeddings(heads)) if shared is not None else (lambda: evaluate.image_embeddings(model, images))
    return _cached_tensor("image-embeddings", [model_name, visual, key], compute)


def clip_embeddings(model_name: str, model, frames: torch.Tensor, protocol: str = "paper", shared=None, heads=()) -> torch.Tensor:
    """Clip embeddings [N, D] of uint8 frames [N, F, 3, H, W] under a video protocol
    (`ccs.evalset.PROTOCOLS`): every frame through the image tower (cached like `embeddings`; `shared`
    and `heads` as there, `shared` made of the frames flattened), the normalised frame embeddings
    averaged over the frames (mean pooling), the mean renormalised only under ``clip4clip``
    (`ccs.evaluate.pool_frames`; the paper's code does not renormalise)."""
    n, f = frames.shape[:2]
    emb = embeddings(model_name, model, frames.flatten(0, 1), shared, heads).view(n, f, -1)
    return evaluate.pool_frames(emb, protocol)


def group(condition: str) -> str:
    """The group a condition belongs to: ``random/3`` -> ``random``; ``high`` -> ``high``."""
    return condition.split("/")[0]


@dataclass
class Results:
    """Per-image scores: scores[(condition, set, task)] = {measure: array [N] (NaN: not applicable)}."""

    scores: dict = field(default_factory=dict)
    heads: dict = field(default_factory=dict)  # condition -> pruned heads

    def conditions(self) -> list[str]:
        return list(dict.fromkeys(c for c, _, _ in self.scores))

    def members(self, name: str) -> list[str]:
        """The conditions a name stands for: itself, or every member of a group."""
        if any(c == name for c in self.conditions()):
            return [name]
        out = [c for c in self.conditions() if group(c) == name]
        if not out:
            raise KeyError(f"no condition or group {name!r} (have {', '.join(self.conditions())})")
        return out

    def tasks(self, evalset: str) -> list[str]:
        return list(dict.fromkeys(t for _, s, t in self.scores if s == evalset))

    def per_image(self, name: str, evalset: str, measure: str = "p_true", tasks=None) -> np.ndarray:
        """Per-image score of a condition or group on a set: the mean over `tasks` (default all of the
        set's tasks) where they apply, and over a group's members."""
        tasks = list(tasks or self.tasks(evalset))
        with warnings.catch_warnings():  # an image no task applies to is NaN, and says so no louder
            warnings.simplefilter("ignore", RuntimeWarning)
            per = [np.nanmean(np.stack([self.scores[c, evalset, t][measure] for t in tasks]), 0) for c in self.members(name)]
        return np.mean(per, 0)

    def value(self, name: str, evalset: str, measure: str = "p_true", tasks=None) -> float:
        return float(np.nanmean(self.per_image(name, evalset, measure, tasks)))

    def seeds(self, name: str, evalset: str, measure: str = "p_true", tasks=None) -> dict[str, float]:
        """The spread of a group's members (one value per seed)."""
        return intervals.spread([self.value(c, evalset, measure, tasks) for c in self.members(name)])

    def per_draw(self, name: str, evalset: str, measure: str = "p_true", tasks=None) -> np.ndarray:
        """[members, images]: the per-image score of each member of a group (one row for a condition)."""
        return np.stack([self.per_image(c, evalset, measure, tasks) for c in self.members(name)])

    def compare(
        self, a: str, b: str, evalset: str, measure: str = "p_true", tasks=None, seed: int = 0
    ) -> tuple[float, float, float]:
        """mean(a) - mean(b) over the same images, with its paired bootstrap interval; where a side is
        a group of random draws, the interval resamples the draws too (`intervals.two_level_ci`; the
        draws of two groups made together, as equal-count ones, are resampled together)."""
        x, y = self.per_draw(a, evalset, measure, tasks), self.per_draw(b, evalset, measure, tasks)
        keep = ~(np.isnan(x).any(0) | np.isnan(y).any(0))
        paired = len(x) == len(y) > 1 and [c.split("/")[-1] for c in self.members(a)] == [
            c.split("/")[-1] for c in self.members(b)
        ]
        return intervals.two_level_ci(x[:, keep], y[:, keep], seed=seed, paired_draws=paired)

    def drop(
        self, name: str, evalset: str, measure: str = "p_true", tasks=None, baseline: str = "original"
    ) -> tuple[float, float, float]:
        """How much pruning costs: baseline - condition, with its paired interval (> 0: it hurts)."""
        return self.compare(baseline, name, evalset, measure, tasks)


def run(
    model,
    model_name: str,
    sets: Mapping[str, EvalSet],
    clfs: Mapping[str, torch.Tensor],
    conditions: Mapping[str, list],
    *,
    mode: str = "zero",
    means: dict | None = None,
    only: Mapping[str, list] | None = None,
    progress: bool = True,
    results: Results | None = None,
) -> Results:
    """Measure every task of every set under every condition (`only` limits a condition to some sets).
    `mode` and `means`: see ccs.ablate.pruned."""
    from tqdm.auto import tqdm

    results = results or Results()
    scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
    jobs = [(c, s) for c in conditions for s in sets if only is None or s in only.get(c, sets)]
    scored = {}
    with tqdm(total=len(jobs), desc="pruning", unit="run", disable=not progress) as bar:
        for name, evalset in sets.items():  # one set at a time, its prunings by first layer (`stream`)
            shared = stream(model, evalset.images)
            for condition in by_first_layer(model, {c: conditions[c] for c, s in jobs if s == name}):
                heads = conditions[condition]
                with ablate.pruned(model, heads, mode, means=means):
                    emb = embeddings(model_name, model, evalset.images, shared, heads)
                for task, labels in evalset.labels.items():
                    s = evaluate.zero_shot_scores(emb, clfs[task], labels, scale)
                    keep = np.asarray(labels) >= 0
                    scored[condition, name, task] = {
                        **{m: _fill(s[m], keep) for m in MEASURES},
                        DETECTION: evaluate.mcm_scores(emb, clfs[task]).numpy(),
                    }
                bar.update()
    for condition, name in jobs:  # in the order asked for: tables list conditions in it
        results.heads[condition] = list(conditions[condition])
        for task in sets[name].labels:
            results.scores[condition, name, task] = scored[condition, name, task]
    return results


def _fill(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    out = np.full(len(keep), np.nan)
    out[keep] = values
    return out


def central_claims(r: Results, evalset: str = "test", measure: str = "p_true", prefix: str = "") -> dict:
    """The soft-pruning page's two claims on one evaluation set: the extra drop from pruning the high
    set against the low set and against the random sets (conditions named ``prefix + high`` etc.)."""
    return {
        "high vs low": r.compare(prefix + "low", prefix + "high", evalset, measure),
        "high vs random": r.compare(prefix + "random", prefix + "high", evalset, measure),
    }


def drop_table(r: Results, names, evalset: str, tasks=None) -> pd.DataFrame:
    """One row per condition (or group) and task (``all`` = the mean over the set's tasks): top-1
    accuracy and probability of the true class, each with its drop from ``original`` and the drop's
    paired 95 % interval, in percentage points; for groups, the standard deviation over the seeds."""
    rows = []
    for task in ["all", *(tasks or r.tasks(evalset))]:
        sel = None if task == "all" else [task]
        for name in names:
            row = {"condition": name, "task": task}
            for m, label in (("correct", "top-1"), ("p_true", "p(true)")):
                d = r.drop(name, evalset, m, sel)
                row[f"{label} %"] = 100 * r.value(name, evalset, m, sel)
                row[f"{label} drop"] = 100 * d[0]
                row[f"{label} drop CI"] = f"[{100 * d[1]:.1f}, {100 * d[2]:.1f}]"
                if len(r.members(name)) > 1:
                    row[f"{label} seed sd"] = 100 * r.seeds(name, evalset, m, sel)["std"]
            rows.append(row)
    return pd.DataFrame(rows)


def importance_rho(r: Results, ccs, evalset: str = "test", measure: str = "p_true") -> tuple[float, float, float]:
    """Does a head's CCS predict what pruning it alone costs? Spearman's rho between each head's CCS
    (`ccs`: a Series indexed by head name) and the drop of its ``head/NAME`` condition, with the
    bootstrap interval over the heads (`intervals.spearman_ci`); > 0: higher-CCS heads cost more."""
    base = r.per_image("original", evalset, measure)
    drops = [np.nanmean(base - r.per_image(f"head/{n}", evalset, measure)) for n in ccs.index]  # `drop`'s estimates
    return intervals.spearman_ci(ccs.to_numpy(), drops)
