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
# This page runs the claims of the set-based pages once per analysis seed and for each source of sets
# (the soft-pruning page's central test on the test split, the shifted-data page's on the shifted
# splits, and the concept-pruning page's diagonal), and counts in how many seeds each verdict comes
# out the same. A claim replicates on a model only if it holds on every seed. (The video page's
# claims are not repeated here: its retrieval sits at its ceiling on every model, see its page.)

# %% tags=["hide-input"]
import json

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from myst_nb import glue

from ccs import models, ood, plots, pruning, replication, study, world

plots.style()
pd.set_option("display.width", 200, "display.max_colwidth", 120)
torch.set_num_threads(2)

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

# %% [markdown]
# ## The sets of every seed, and the test on each

# %% tags=["hide-input"]
print(models.banner(model, weights))
shifted = ["sketch", "noisy", "novel-shades"]
label_source = {"run": "this run", "truth": "ground truth", "function": "function"}  # concept labels -> sets
eval_sets = pruning.world_sets(eval_images, eval_seed, ["test", *shifted])
clfs, rows, heads, points = None, [], {}, []
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
    conditions = st.conditions(equal=False) | study.concept_conditions(concept_sources)
    only = {k: ["test"] for k in conditions if k.startswith("concepts: ")}  # the diagonal is a test-split claim
    r = pruning.run(st.module, model, eval_sets, clfs, conditions, only=only, progress=False)
    concept_claims = {src: pruning.diagonal_test(r, list(c), "test", measure, prefix=p) for src, p, c in concept_sources}
    for prefix, src in st.sources():
        claims = pruning.central_claims(r, "test", measure, prefix=prefix)
        claims |= {f"shifted: high vs {b}": ood.high_vs(r, shifted, b, measure, prefix) for b in ("low", "random")}
        diag = concept_claims.get(src.source)
        if diag is not None and diag["concepts"]:
            claims["concept diagonal"] = diag["difference"]
        heads[f"{s}/{src.source}"] = src.high
        points += [
            {"analysis seed": s, "sets": src.source, "claim": k, "estimate": 100 * v[0], "lo": 100 * v[1], "hi": 100 * v[2]}
            for k, v in claims.items()
        ]
        rows.append(
            {
                "analysis seed": s,
                "sets": src.source,
                "test": src.test,
                **{k: pruning.interval_text(v) for k, v in claims.items()},
                **{f"{k} verdict": pruning.verdict([v]) for k, v in claims.items()},
                "high heads": " ".join(src.high),
            }
        )
by_seed = pd.DataFrame(rows)
by_seed.set_index(["sets", "analysis seed"]).sort_index(level=0, sort_remaining=False)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Every claim on every analysis seed: per panel one claim (the extra cost, in the page's measure, of pruning the high set against the low or random sets, on the test or the shifted splits; for the concept diagonal, the excess cost of a concept's heads on its own task minus on the other tasks), per source of sets and seed, with 95 % intervals in percentage points; each claim predicts its intervals above zero.", "name": "fig-seeds"}, "image": {"alt": "Panels of intervals, one per claim, one row per source of sets and analysis seed."}}
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
    ax.set(title=claim, xlabel="extra cost of the pruned set (pp)")
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
agreement = replication.seed_agreement(by_seed)
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
    "seed_agreement": replication.agreement_record(agreement),
}
with open("seeds.json", "w") as f:
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
