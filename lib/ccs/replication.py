"""The replication page: does each claim of the paper hold across the book's trained models, and with
both sources of head sets (this run's CCS and the concept world's ground truth)?

Every experiment page records its claims in its JSON under ``replication``:
``{source: {claim: {"estimate", "low", "high", "verdict"}}}`` (`ccs.record` defines it). `write` reads them
for every model of pipeline.yaml and renders, per claim, one row per model and source, the number of
models that support it, a random-effects pooled estimate across models (statsmodels'
`combine_effects`, Paule-Mandel: its interval widens with the spread between models; statsmodels'
DerSimonian-Laird lets the between-model variance go negative, which narrows the interval) and a
forest plot. Like the paper-tables page, the page is generated, never hand-written, and rewritten
(with its figures) only when its content changes; the Snakefile calls `write` before and after a run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ccs.record import CLAIMS, SOURCES, TESTS, Claim

Z = 1.959964  # the normal quantile of a 95 % interval


def _finite(*xs) -> bool:
    return all(x is not None and isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def collect(models: list[str], runs_dir: Path) -> list[dict]:
    """Every (claim, model, source) row the runs' JSONs hold."""
    rows, records = [], {}
    for model in models:
        seeds_path = runs_dir / model / "seeds.json"
        seeds = json.loads(seeds_path.read_text()).get("seed_agreement", {}) if seeds_path.is_file() else {}
        for claim in CLAIMS:
            path = runs_dir / model / f"{claim.experiment}.json"
            if path not in records:  # several claims come from one page: read each JSON once
                records[path] = json.loads(path.read_text()) if path.is_file() else None
            rec = records[path]
            if rec is None:
                continue
            for source in SOURCES:
                r = (rec.get("replication") or {}).get(source, {}).get(claim.key)
                if r:
                    rows.append(
                        {
                            "claim": claim.key,
                            "model": model,
                            "source": source,
                            "weights": rec.get("weights", "trained"),
                            **r,
                            **({"seeds": seeds[source][claim.key]} if claim.key in seeds.get(source, {}) else {}),
                        }
                    )
    return rows


EPS = 0.005  # proportions are kept this far from 0 and 1 on the logit scale


def _logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def pooled(rows: list[dict], bounded: bool = False) -> dict | None:
    """Random-effects (Paule-Mandel) pooled estimate of rows' estimates, each with the standard
    error its 95 % interval implies; None for fewer than one usable row. A `bounded` claim (a
    proportion) is pooled on the logit scale and mapped back, so its interval stays inside [0, 1]
    (proportions of 0 or 1 are moved `EPS` inside first)."""
    import numpy as np
    from statsmodels.stats.meta_analysis import combine_effects

    use = [r for r in rows if _finite(r["estimate"], r["low"], r["high"])]
    if not use:
        return None
    f, back = (_logit, _expit) if bounded else (float, float)
    eff = np.array([f(r["estimate"]) for r in use])
    var = np.array([max((f(r["high"]) - f(r["low"])) / (2 * Z), 1e-9) ** 2 for r in use])
    if len(use) == 1:
        return {"estimate": use[0]["estimate"], "low": use[0]["low"], "high": use[0]["high"], "models": 1, "tau2": 0.0}
    res = combine_effects(eff, var, method_re="iterated")
    lo, hi = res.conf_int(alpha=0.05)[1]  # row 1: the random-effects estimate
    return {
        "estimate": back(float(res.mean_effect_re)),
        "low": back(float(lo)),
        "high": back(float(hi)),
        "models": len(use),
        "tau2": float(res.tau2),
    }


def _fmt(claim: Claim, est, lo, hi) -> str:
    if not _finite(est, lo, hi):
        return "n/a"
    s = claim.scale
    return f"{est * s:+.2f}{claim.unit} [{lo * s:.2f}, {hi * s:.2f}]".replace("-", "\u2212")


def forest(claim: Claim, rows: list[dict], pools: dict, path: Path) -> None:
    """One forest plot: a row per model and source with its interval, the pooled estimates as diamonds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ccs import plots

    plots.style()
    labels, ys, colours = [], [], {"this run": "C0", "ground truth": "C1", "function": "C2"}
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * (len(rows) + len(pools)) + 1.3))
    y = 0
    for source in SOURCES:
        for r in (r for r in rows if r["source"] == source):
            if _finite(r["estimate"], r["low"], r["high"]):
                ax.errorbar(
                    r["estimate"] * claim.scale,
                    -y,
                    xerr=[[(r["estimate"] - r["low"]) * claim.scale], [(r["high"] - r["estimate"]) * claim.scale]],
                    fmt="o",
                    color=colours[source],
                    capsize=3,
                )
            labels.append(f"{r['model']} ({source})")
            ys.append(-y)
            y += 1
        p = pools.get(source)
        if p and p["models"] > 1:
            e, lo, hi = (p[k] * claim.scale for k in ("estimate", "low", "high"))
            ax.fill([lo, e, hi, e], [-y, -y + 0.3, -y, -y - 0.3], color=colours[source], alpha=0.8)
            labels.append(f"pooled, {p['models']} models ({source})")
            ys.append(-y)
            y += 1
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set(xlabel=f"{claim.effect}" + (f" ({claim.unit.strip()})" if claim.unit.strip() else ""), title=claim.title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def tally(rows: list[dict]) -> str:
    """'supported on 1, contradicted on 2, inconclusive on 1 of 4 models' (every verdict counted)."""
    from ccs.verdicts import VERDICTS

    counts = {v: sum(r["verdict"].startswith(v) for r in rows) for v in VERDICTS}
    counts["no verdict"] = len(rows) - sum(counts.values())
    parts = [f"{v} on {n}" for v, n in counts.items() if n or v in VERDICTS]
    return f"{', '.join(parts)} of {len(rows)} model{'s' if len(rows) != 1 else ''}"


def _ranked(rows: list[dict]) -> int:
    return sum(r.get("test") == "ranked" for r in rows)


def summary(claim: Claim, sub: list[dict], pools: dict) -> list[str]:
    """Per source, as a Markdown list: every verdict counted over the models, which test they rest on,
    and the pooled estimate."""
    out = []
    for s in SOURCES:
        srows = [r for r in sub if r["source"] == s]
        if not srows:
            continue
        p = pools[s]
        pooled_text = (
            f"pooled {_fmt(claim, p['estimate'], p['low'], p['high'])} over {p['models']} models"
            if p and p["models"] > 1
            else "one model: no pooled estimate"
        )
        ranked = _ranked(srows)
        on = f" (on ranked sets for {ranked} of them: the paper's test cannot be formed there)" if ranked else ""
        seeded = [r for r in srows if "seeds" in r]
        every = (
            f"; it holds on every analysis seed on {sum(r['seeds']['replicated'] for r in seeded)} of {len(seeded)} models"
            if seeded
            else ""
        )
        out.append(f"- *{s}* sets: {tally(srows)}{on}{every}; {pooled_text}.")
    return out


def _counts(rows: list[dict]) -> dict[str, int]:
    from ccs.verdicts import VERDICTS

    return {v: sum(r["verdict"].startswith(v) for r in rows) for v in VERDICTS}


def answer(rows: list[dict], models: list[str]) -> str:
    """The book's answer in plain words, chosen by the computed verdicts (this run's sets), so that it
    stays true whatever the runs say: whether the paper's test could be formed, what pruning the most
    consistent heads costs against random heads, and what pruning a concept's heads costs."""
    n = len(models)
    run = [r for r in rows if r["source"] == "this run"]
    central = [r for r in run if r["claim"] == "pruning-high-vs-random"]
    if not central:
        return "No run of this book records the central claim yet."
    paper_test = sum(r.get("test", "paper") == "paper" for r in central)
    c = _counts(central)
    if paper_test == len(central):
        first = f"On all {n} of the book's models the paper's own test can be formed"
    elif paper_test == 0:
        first = (
            f"On none of the book's {n} models can the paper's own test be formed (too few heads have CCS 5 "
            "or CCS \u2264 1), so they compare the highest- against the lowest-CCS heads instead"
        )
    else:
        first = f"On {paper_test} of the book's {n} models the paper's own test can be formed"
    if c["supported"] == len(central):
        second = "pruning the most consistent heads costs more than pruning as many random heads on every one of them"
    elif c["supported"] == 0:
        second = (
            "pruning the most consistent heads costs no more than pruning as many random heads: "
            f"less on {c['contradicted']}, and no detectable difference on {c['inconclusive']} of the {len(central)}"
        )
    else:
        second = (
            f"pruning the most consistent heads costs more than pruning as many random heads on {c['supported']} "
            f"of the {len(central)} models, less on {c['contradicted']}, and no detectable difference on "
            f"{c['inconclusive']}"
        )
    out = f"{first}; {second}."
    diag = [r for r in run if r["claim"] == "concept-diagonal"]
    if diag:
        d = _counts(diag)
        out += (
            " Pruning the heads labelled with one concept costs that concept's own task more than the other "
            f"tasks on {d['supported']} of {len(diag)} models"
            + (f" (less on {d['contradicted']})" if d["contradicted"] else "")
            + "."
        )
    return out + " (This run's head sets; the chapters give the ground truth's and the function's beside them.)"


def fragments(models: list[str], runs_dir: Path) -> dict[str, str]:
    """Per claim, the summary lines the chapters include (``{include}``) from the page's folder, and
    the book's answer in plain words (``summary-answer.md``)."""
    rows = collect(models, runs_dir)
    out = {
        "summary-answer.md": "<!-- Written by ccs.replication from book/runs/*/*.json; do not edit. -->\n"
        + answer(rows, models)
        + "\n"
    }
    for claim in CLAIMS:
        sub = [r for r in rows if r["claim"] == claim.key]
        pools = {s: pooled([r for r in sub if r["source"] == s], claim.bounded) for s in SOURCES}
        lines = summary(claim, sub, pools) or ["- no run records this claim yet."]
        plural = "s" if len(models) != 1 else ""
        out[f"summary-{claim.key}.md"] = (
            "<!-- Written by ccs.replication from book/runs/*/*.json; do not edit. -->\n"
            f"{claim.title}, across {len(models)} trained model{plural}:\n\n" + "\n".join(lines) + "\n"
        )
    return out


def page(models: list[str], runs_dir: Path, figures: Path | None = None, draw: bool = False) -> str:
    """The page's Markdown, its forest plots in the folder `figures` (none: no figures), drawn there
    when `draw`."""
    rows = collect(models, runs_dir)
    out = [
        "# Do the claims replicate?",
        "",
        "<!-- Written by `ccs replication` (ccs.replication) from book/runs/*/*.json; do not edit. -->",
        "",
        "Each claim of the paper (and two questions this book adds, marked as such), measured on every "
        "trained model of this book, with **three sources of head sets**: the sets this run's labeler and "
        "judge pick (*this run*), the sets the concept world's text ground truth picks (*ground truth*: a "
        "head's true CCS is how many of its texts come from one concept), and the sets of what heads "
        "compute (*function*: the most against the least specialised heads). A claim that holds for one "
        "source only rests on that source, not on the model. The *test* column says whether a row is the "
        "paper's test (every CCS-5 head against every CCS \u2264 1 head) or, where a model has too few "
        "heads in those categories, the ranked sets of the secondary analysis. Verdicts: *supported* "
        "(the interval lies above zero), *contradicted* (wholly below), *inconclusive* (it straddles "
        "zero), *no verdict* (nothing could show). Per claim: one row per model and source, every "
        "verdict counted, and a random-effects pooled estimate across models, whose interval widens "
        "with the spread between them (Paule-Mandel, statsmodels' `combine_effects`; shares on the "
        "logit scale). The *analysis seeds* column comes from the model's seeds page, which runs the "
        "claim again on each analysis seed (the images TextSpan decomposes, and so each head's texts, "
        "label, CCS and the sets): the most common verdict and on how many seeds it comes out. A claim "
        "*holds on every analysis seed* of a model only if it is supported on each.",
        "",
        f"Models: {', '.join(f'`{m}`' for m in models)}.",
        "",
    ]
    for claim in CLAIMS:
        sub = [r for r in rows if r["claim"] == claim.key]
        origin = "the paper's claim" if claim.origin == "paper" else "a question this book adds (not in the paper)"
        out += [f"## {claim.title}", "", f"*Effect:* {claim.effect} (page: `{claim.experiment}`; {origin}).", ""]
        if not sub:
            out += ["No run records this claim yet.", ""]
            continue
        pools = {s: pooled([r for r in sub if r["source"] == s], claim.bounded) for s in SOURCES}
        with_seeds = any("seeds" in r for r in sub)
        out += [
            "| model | sets | test | effect [95 % CI] | verdict |" + (" analysis seeds |" if with_seeds else ""),
            "|---|---|---|---|---|" + ("---|" if with_seeds else ""),
        ]
        for r in sub:
            flag = " (random weights)" if r["weights"] == "random" else ""
            seeds_cell = f" {r['seeds']['agree']} |" if "seeds" in r else (" |" if with_seeds else "")
            out.append(
                f"| {r['model']}{flag} | {r['source']} | {TESTS.get(r.get('test'), '')} "
                f"| {_fmt(claim, r['estimate'], r['low'], r['high'])} | {r['verdict']} |{seeds_cell}"
            )
        out += ["", *summary(claim, sub, pools), ""]
        if figures is not None:
            name = f"replication-{claim.key}.png"
            if draw:
                forest(claim, sub, pools, figures / name)
            out += [
                f"```{{figure}} {figures.name}/{name}",
                f":name: fig-replication-{claim.key}",
                f":alt: Forest plot of {claim.effect}: one interval per model and set source"
                + (", with pooled estimates as diamonds." if any(p and p["models"] > 1 for p in pools.values()) else "."),
                "",
                f"{claim.title}: {claim.effect}, per model and set source, with 95 % intervals.",
                "```",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def target() -> Path | None:
    """Where pipeline.yaml says the page goes (``replication:``), or None."""
    from ccs import pipeline

    rel = pipeline.grid().get("replication")
    return pipeline.ROOT / rel if rel else None


def write(out: Path | None = None, runs_dir: Path | None = None, models: list[str] | None = None) -> Path | None:
    """Render the page (and its figures, in a folder named like the page) where pipeline.yaml says,
    rewriting only when the text changes. Returns the path, or None when no page is configured."""
    from ccs import pipeline

    out = out or target()
    if out is None:
        return None
    runs_dir = runs_dir or pipeline.ROOT / "book" / "runs"
    models = models or list(pipeline.grid()["models"])
    folder = out.parent / out.stem
    text = page(models, runs_dir, figures=folder)
    drawn = all((folder / f"replication-{c.key}.png").is_file() for c in CLAIMS if f"replication-{c.key}.png" in text)
    parts = fragments(models, runs_dir)
    if (
        out.is_file()
        and out.read_text() == text
        and drawn
        and all((folder / n).is_file() and (folder / n).read_text() == t for n, t in parts.items())
    ):
        return out
    folder.mkdir(parents=True, exist_ok=True)
    page(models, runs_dir, figures=folder, draw=True)
    for name, t in parts.items():
        (folder / name).write_text(t)
    out.write_text(text)
    return out
