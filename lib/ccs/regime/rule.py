"""The study's selection rule: the targets, the measured runs (`results`), their rank and the recipe
the rule chooses (`select`). Only the ground-truth CCS distribution and the concept accuracies enter."""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

from ccs import models
from ccs.regime.runs import RESULTS, study

TARGETS = {"high_share": 0.15, "low_share": 0.08}  # ViT-B-32-OpenAI: 8 and 4 of 48 heads
# the zoo's concept targets (zero-shot, on each evaluation seed): 0.95, but the two hardest concepts
ACCURACY_TARGETS = {"shape": 0.90, "texture": 0.85}
ACCURACY_TARGET = 0.95


def results(folder: Path = RESULTS) -> list[dict]:
    """Every measured run: each configuration of regime.yaml in its order (the short run, then its
    full-length and other-seed runs), then the zoo's shipped models at full length."""
    found = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    order = [
        n
        for c in study()["configurations"]
        for n in [c, *sorted(n for n in found if n.startswith(c + "-") and found[n].get("recipe") == c)]
        if n in found
    ]
    return [found[n] for n in order + sorted(n for n in found if n.startswith("zoo-"))]


def is_short(r: dict) -> bool:
    """A short run of the study (not a full-length or other-seed run, nor a zoo model)."""
    return r["configuration"] in study()["configurations"]


def score(r: dict) -> float:
    """How far the scarcer of the two categories is towards its target (both met at >= 1)."""
    return min(r["high_share"] / TARGETS["high_share"], r["low_share"] / TARGETS["low_share"])


@cache
def parameters(config: str) -> int:
    """The parameter count of an open_clip config of the package (the rule's tie-break)."""
    import open_clip

    models._register_configs()
    logging.disable(logging.WARNING)  # "no pretrained weights loaded": none are wanted
    try:
        return sum(p.numel() for p in open_clip.create_model(config, pretrained=None).parameters())
    finally:
        logging.disable(logging.NOTSET)


def rank(rows: list[dict]) -> list[dict]:
    """The short runs in the rule's order: by the scarcer category's progress; ties (every run without
    a CCS <= 1 head scores 0) to the larger CCS-5 share, then to the smaller model."""
    short = [r for r in rows if is_short(r)]
    return sorted(short, key=lambda r: (-round(score(r), 6), -round(r["high_share"], 6), parameters(r["config"])))


def accuracy_misses(r: dict) -> list[str]:
    """The zoo's concept targets a run misses, e.g. ``["shape 0.871 < 0.90 (seed 2468)"]``."""
    return [
        f"{c} {a:.3f} < {ACCURACY_TARGETS.get(c, ACCURACY_TARGET):.2f} (seed {s})"
        for s, acc in r["accuracy"].items()
        for c, a in acc.items()
        if a < ACCURACY_TARGETS.get(c, ACCURACY_TARGET)
    ]


def recipe(r: dict) -> tuple:
    """What trains a model of a row, short of its length: the open_clip config, the world, the share
    of single-concept captions and the training seed (the rest of the recipe is the zoo's for all)."""
    from ccs import train

    if r["configuration"].startswith("zoo:"):
        z = models.zoo()[r["configuration"][4:]]
        return z["config"], z.get("world", "base"), train.TrainConfig.single, z["seed"]
    c = study()["configurations"][r["recipe"] if "recipe" in r else r["configuration"]]
    return c["config"], c.get("world", "base"), c.get("single", train.TrainConfig.single), r.get("seed", study()["seed"])


def full_run(rows: list[dict], short: dict) -> dict | None:
    """A short run's recipe at full length: its own `--full` run, else the zoo's model trained by the
    same recipe from the same seed (base is ccs-tiny), which `make train-tiny` trained at that length."""
    seed = short.get("seed", study()["seed"])
    name = short["configuration"]
    own = (f for f in rows if f.get("recipe") == name and f.get("full") and f["seed"] == seed)
    zoo = (f for f in rows if f["configuration"].startswith("zoo:") and recipe(f) == recipe(short))
    return next(own, None) or next(zoo, None)


def zoo_twins(rows: list[dict]) -> list[tuple[dict, dict]]:
    """The short runs whose recipe at full length is a zoo model (`full_run`), with that model's row."""
    pairs = [(r, full_run(rows, r)) for r in rows if is_short(r)]
    return [(r, f) for r, f in pairs if f is not None and f["configuration"].startswith("zoo:")]


def select(rows: list[dict]) -> tuple[dict | None, str]:
    """The recipe the written rule chooses, and why (or why none is chosen yet): the first short run
    in rank whose full-length run meets the zoo's concept targets and has a larger share of CCS-5
    heads than every zoo model. Where the first untrained one stops the rule, the full-length runs
    further down the rank are reported too."""
    zoo_high = max((r["high_share"] for r in rows if r["configuration"].startswith("zoo:")), default=0.0)
    why, waiting = [], None
    for r in rank(rows):
        name = r["configuration"]
        full = full_run(rows, r)
        if full is None:
            if waiting is None:
                waiting = len(why)
                where = " is first in rank and" if not why else ", next in rank, is"
                why.append(f"**{name}**{where} not yet trained at full length (`ccs regime run {name} --full`)")
            continue
        misses = accuracy_misses(full)
        if misses or full["high_share"] <= zoo_high:
            why.append(
                f"{name} at full length "
                + (f"({full['configuration']}, the same recipe and seed) " if not full.get("full") else "")
                + (
                    f"misses the concept targets ({', '.join(misses)})"
                    if misses
                    else f"keeps {100 * full['high_share']:.1f} % CCS-5 heads, no more than the zoo's {100 * zoo_high:.1f} %"
                )
            )
            continue
        if waiting is not None:
            why.append(f"{name} at full length would qualify, after the runs above it")
            continue
        return r, "; ".join(
            [
                *why,
                f"**{name}** at full length meets the concept targets and has "
                f"{100 * full['high_share']:.1f} % CCS-5 heads (the zoo's best: {100 * zoo_high:.1f} %)",
            ]
        )
    if waiting is not None and len(why) > waiting + 1:  # what lies further down the rank
        why[waiting + 1] = "further down the rank, " + why[waiting + 1]
    return None, "; ".join(why) or "no short run is measured"


def baseline(rows: list[dict]) -> tuple[int, int, int]:
    """The default recipe's training seeds pooled (regime.yaml's `baseline`): heads at true CCS 5, heads
    analysed, seeds measured."""
    base = [r for r in rows if r["configuration"] in study()["baseline"]]
    return sum(r["high"] for r in base), sum(r["heads"] for r in base), len(base)


def fallback(rows: list[dict]) -> tuple[dict | None, dict | None, float | None]:
    """Where the rule chooses nothing and waits for no run (regime.yaml's `fallback`): (the model the
    book moves to or None, the best full-length model that meets the concept targets, the one-sided
    p-value of Fisher's exact test of its CCS-5 share against the baseline's pooled seeds). All None
    while the rule may still choose, or when no full-length model meets the targets (p is None then)."""
    from scipy.stats import fisher_exact

    if select(rows)[0] is not None or next_full(rows) is not None or not rank(rows):
        return None, None, None
    best, _ = best_reached(rows)
    k, n, seeds = baseline(rows)
    if best is None or not seeds:
        return None, best, None
    p = float(fisher_exact([[best["high"], best["heads"] - best["high"]], [k, n - k]], alternative="greater").pvalue)
    return (best if p < 0.05 and best["configuration"] not in study()["baseline"] else None), best, p


def next_full(rows: list[dict]) -> dict | None:
    """The short run whose full-length run the rule waits for: the first in rank without one, unless
    the rule has already chosen a recipe (None then, and when every run in rank has one)."""
    if select(rows)[0] is not None:
        return None
    return next((r for r in rank(rows) if full_run(rows, r) is None), None)


def is_full(r: dict) -> bool:
    """A model trained at the zoo's length: a study run with `--full`, or a zoo model."""
    return bool(r.get("full")) or r["configuration"].startswith("zoo:")


def best_reached(rows: list[dict]) -> tuple[dict | None, dict | None]:
    """The full-length models best by the rule's score (then by CCS-5 share, then CCS <= 1 share): the
    best of those that meet the zoo's concept targets, and the best of those that miss them where it
    is better still (else None)."""

    def key(r: dict) -> tuple:
        return round(score(r), 6), round(r["high_share"], 6), round(r["low_share"], 6)

    full = [r for r in rows if is_full(r)]
    meets = max((r for r in full if not accuracy_misses(r)), key=key, default=None)
    misses = max((r for r in full if accuracy_misses(r)), key=key, default=None)
    better = misses is not None and (meets is None or key(misses) > key(meets))
    return meets, misses if better else None


def other_seeds(rows: list[dict]) -> list[tuple[dict, dict]]:
    """Short runs from another training seed, each with its configuration's run from the study's seed."""
    short = {r["configuration"]: r for r in rows if is_short(r)}
    return [
        (short[r["recipe"]], r)
        for r in rows
        if not r.get("full") and r.get("recipe") in short and r["configuration"] != r["recipe"]
    ]


def place(rows: list[dict], run: dict, instead: dict | None = None) -> int:
    """A short run's place in the rule's rank (1 first), or its place with `instead` (another seed's
    run of its configuration) standing in for it."""
    name = run["configuration"]
    swapped = [dict(instead, configuration=name) if instead and r is run else r for r in rows]
    return 1 + [r["configuration"] for r in rank(swapped)].index(name)
