# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Do the verdicts survive another analysis seed?
#
# A page's interval covers the images it evaluates on, the random draws and the choice among tied
# heads. One more source of chance is fixed on every page: the **analysis seed**, which draws the
# images TextSpan decomposes, and so each head's five texts, its label, its CCS and the sets pruned.
# This page runs the claims of the CCS and set-based pages once per analysis seed and for each source
# of sets: the share of heads with CCS 5 (the CCS page), the soft-pruning page's central tests on the
# test split and whether a head's CCS predicts the cost of pruning it alone, the shifted-data page's
# tests on the shifted splits and its OOD-detection claim, the concept-pruning page's diagonal and
# its two concept tables, and the video page's two retrieval tests (text to video R@1, "no verdict"
# where the unpruned model already finds nearly every clip first). It counts in how many seeds each
# verdict comes out the same; a claim replicates on a model only if it holds on every seed. (The
# function sets have no CCS, so the CCS share and the importance correlation are claims of the two
# text sources only.) Each set gets the `seeds` parameter's random (and tie) draws, which the book
# keeps smaller here than on the set-based pages (`pipeline.yaml`): seed 0 repeats a page's analysis
# with other draws, so its intervals are wider and its estimates need not equal the page's.

# %% tags=["hide-input"]
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from myst_nb import glue

from ccs import concept_pruning, evaluate, models, ood, plots, pruning, record, retrieval, scores, study, verdicts, world

plots.style()
pd.set_option("display.width", 200, "display.max_colwidth", 120)

# %% tags=["parameters", "hide-input"]
model = "ccs-tiny"  # [model] a registered model (`ccs models`)
weights = "trained"  # [trained | random] "trained", or "random": the same architecture untrained (tests the path, no download)
backend = "embedding"  # [embedding | openai] labeler and judge
pool = "world"  # [pool] TextSpan's description pool
calibration = "pool"  # [pool | world | real | lenient] the offline judge's calibration
images = 1000  # [at least 2] images TextSpan decomposes, per analysis seed
texts = 5  # [at least 1]
analysis_seeds = [0, 1, 2]  # [list of at least 0] the seeds of the images TextSpan decomposes
seeds = 5  # [at least 1] random (and tie) draws per set
eval_images = 1000  # [at least 2] fresh concept-world test images
eval_seed = 1  # [at least 0]
measure = "p_true"  # [p_true | correct] "p_true" (probability of the true class) or "correct" (top-1)
detect_task = "shape"  # [concept] the class prompts whose MCM score detects OOD images (novel shapes have no class)
clips = 500  # [at least 3] concept-world clips of the video claims (the video page's)
frames = 8  # [at least 1] frames per clip
clip_seed = 1  # [at least 0]
protocol = "paper"  # [paper | clip4clip] video protocol (see the video page)

# %% [markdown]
# ## The sets of every seed, and the test on each

# %% tags=["hide-input"]
print(models.banner(model, weights))
print(f"analysis seeds {', '.join(map(str, analysis_seeds))}; {seeds} random (and tie) draws per set")
shifted = ["sketch", "noisy", "novel-shades"]
label_source = {"run": "this run", "truth": "ground truth", "function": "function"}  # concept labels -> sets
eval_sets = pruning.world_sets(eval_images, eval_seed, ["test", *shifted, "novel-shapes"])
clfs, rows, heads, points = None, [], {}, []
batch = world.clips(clips, clip_seed, frames=frames)  # the video claims' clips, the same on every seed
captions, text = [world.full_caption(a) for _, a in batch.attributes.iterrows()], None
scale = {"CCS-5 share": (100, " %"), "importance rho": (1, "", 2), "OOD AUROC drop": (100, " AUROC pts")}  # else pp

for s in analysis_seeds:
    st = study.load(
        model,
        weights=weights,
        images=images,
        pool=pool,
        texts=texts,
        seed=s,
        backend=backend,
        calibration=calibration,
        seeds=seeds,
        side=seeds,
    )
    clfs = clfs or pruning.classifiers(model, st.module, st.tokenizer, world.tasks())
    concept_sources = [(label_source.get(l, l), "concepts: " + p, c) for l, p, c in st.concept_sets("run", seeds)]
    singles = {f"head/{n}": [n] for n in st.table["name"]}  # the same on every seed: computed once, then cached
    set_conditions = st.conditions(equal=False)  # every source's high, low and random sets
    conditions = set_conditions | study.concept_conditions(concept_sources) | singles
    # the concept and single-head claims are test-split claims; detection needs the novel shapes only
    # unpruned and with the high sets pruned
    only = {
        k: ["test"]
        if k.startswith("concepts: ") or k in singles
        else [*eval_sets]
        if pruning.group(k.split(": ")[-1]) in ("original", "high")
        else ["test", *shifted]
        for k in conditions
    }
    r = pruning.run(st.module, model, eval_sets, clfs, conditions, only=only, progress=False)
    at_chance = ood.detector_at_chance(r, detect_task)
    text = text if text is not None else evaluate.text_embeddings(st.module, st.tokenizer, captions)
    videos = retrieval.reports(model, st.module, text, batch.frames, set_conditions, protocol)
    video_ceiling = retrieval.at_ceiling(videos)  # nothing left to lose at R@1
    ccs_tables = {"this run": st.table, "ground truth": st.truth}
    for prefix, src in st.sources():
        claims = pruning.central_claims(r, "test", measure, prefix=prefix)
        claims |= {f"shifted: high vs {b}": ood.high_vs(r, shifted, b, measure, prefix) for b in ("low", "random")}
        claims["OOD AUROC drop"] = ood.auroc_drop(r, detect_task, prefix=prefix)
        claims |= {f"video: {k}": v for k, v in retrieval.claims(videos, prefix).items()}
        fixed = {"OOD AUROC drop": verdicts.NO_VERDICT} if at_chance else {}  # nothing detects: nothing to lose
        fixed |= {f"video: high vs {b}": verdicts.NO_VERDICT for b in ("low", "random") if video_ceiling}
        t = ccs_tables.get(src.source)
        if t is not None:
            claims["CCS-5 share"] = record.share(scores.category_counts(t)["high"], int(t["ccs"].notna().sum()))
            claims["importance rho"] = pruning.importance_rho(r, t.set_index("name")["ccs"], "test", measure)
        for label, p, c in concept_sources:
            if label == src.source:
                diag = concept_pruning.diagonal_test(r, list(c), "test", measure, prefix=p)
                if diag["concepts"]:
                    claims["concept diagonal"] = diag["difference"]
                for own, other in (("scene", "shape"), ("shape", "scene")):
                    d = concept_pruning.cross_test(r, own, other, "test", measure, prefix=p)
                    if np.isfinite(d[0]):  # only where both concepts have heads
                        claims[f"concepts: {own} vs {other}"] = d
        heads[f"{s}/{src.source}"] = src.high
        points += [
            {
                "analysis seed": s,
                "sets": src.source,
                "claim": k,
                **dict(zip(("estimate", "lo", "hi"), np.multiply(v, scale.get(k, (100,))[0]))),
            }
            for k, v in claims.items()
        ]
        rows.append(
            {
                "analysis seed": s,
                "sets": src.source,
                "test": src.test,
                **{k: verdicts.interval_text(v, *scale.get(k, (100, " pp"))) for k, v in claims.items()},
                **{f"{k} verdict": fixed.get(k) or verdicts.verdict([v]) for k, v in claims.items()},
                "high heads": " ".join(src.high),
            }
        )
by_seed = pd.DataFrame(rows)
cells = pd.DataFrame(
    [
        {"sets": r["sets"], "claim": k, "analysis seed": r["analysis seed"], "result": f"{r[k]}, {r[f'{k} verdict']}"}
        for r in rows
        for k in r
        if f"{k} verdict" in r
    ]
)
order = pd.MultiIndex.from_frame(cells[["sets", "claim"]].drop_duplicates())
print("Per source of sets and claim, each analysis seed's estimate with its 95 % interval and verdict:")
cells.pivot(index=["sets", "claim"], columns="analysis seed", values="result").reindex(order).fillna("not formed on this seed")

# %% tags=["hide-input"]
print("The high set of each source and analysis seed:")
by_seed.pivot(index="sets", columns="analysis seed", values="high heads").reindex(by_seed["sets"].unique())

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Every claim on every analysis seed: per panel one claim (the share of heads with CCS 5; the extra cost, in the page's measure, of pruning the high set against the low or random sets, on the test or the shifted splits; Spearman's ρ between a head's CCS and the cost of pruning it alone; the novel-shapes AUROC lost by pruning the high set; for the concept diagonal, the excess cost of a concept's heads on its own task minus on the other tasks, and for the two concept tables the excess cost of one concept's heads on its task minus another's; the text-to-video R@1 lost by pruning the high set against the low or random sets), per source of sets and seed, with 95 % intervals (percentage points unless the panel says otherwise); each claim predicts its intervals above zero.", "name": "fig-seeds"}, "image": {"alt": "Panels of intervals, one per claim, one row per source of sets and analysis seed."}}
pts = pd.DataFrame(points)
pts["row"] = pts["sets"] + ", seed " + pts["analysis seed"].astype(str)
claims = list(dict.fromkeys(pts["claim"]))
ncols = min(3, len(claims))
nrows = -(-len(claims) // ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, nrows * (0.3 * pts["row"].nunique() + 1.3)), squeeze=False)
palette = dict(zip(pts["sets"].unique(), sns.color_palette(n_colors=pts["sets"].nunique())))
for ax, claim in zip(axes.flat, claims):
    sub = pts[pts["claim"] == claim]
    for y, row in enumerate(sub.itertuples()):
        ax.errorbar(
            row.estimate, y, xerr=[[row.estimate - row.lo], [row.hi - row.estimate]], fmt="o", color=palette[row.sets], capsize=3
        )
    ax.set_yticks(range(len(sub)), sub["row"], fontsize=8)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.invert_yaxis()
    unit = scale.get(claim, (100, " pp"))[1].strip()
    ax.set(title=claim, xlabel={"%": "share of the heads (%)", "": "Spearman's ρ"}.get(unit, f"estimate ({unit})"))
for ax in axes.flat[len(claims) :]:
    ax.axis("off")
fig.suptitle(f"{model}: every claim on {len(analysis_seeds)} analysis seeds", y=1.01)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Agreement across seeds
#
# Per source of sets and claim: the verdict on each seed, and whether the claim holds (is
# *supported*) on every one of them.

# %% tags=["hide-input"]
agreement = record.seed_agreement(by_seed)
glue("seeds-agreement", agreement, display=False)
glue("seeds-run-replicated", agreement.loc[("this run", "high vs random"), "holds on every seed"], display=False)
agreement

# %% tags=["hide-input"]
stable = {
    src: len({heads[f"{s}/{src}"] and " ".join(heads[f"{s}/{src}"]) for s in analysis_seeds}) for src in by_seed["sets"].unique()
}
print("different high sets across the seeds, per source: " + ", ".join(f"{k} {v}" for k, v in stable.items()))

# %% tags=["remove-cell", "hide-input"]
summary = {
    "model": model,
    "weights": weights,
    "analysis_seeds": analysis_seeds,
    "seeds": seeds,
    "measure": measure,
    "eval_images": eval_images,
    "eval_seed": eval_seed,
    "by_seed": by_seed.to_dict("records"),
    "seed_agreement": record.agreement_record(agreement),
}
with open("seeds.json", "w") as f:
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
