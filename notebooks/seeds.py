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
# This page runs the soft-pruning page's central test (high against low and against random heads,
# on the test split) once per analysis seed and for each source of sets, and counts in how many seeds
# each verdict comes out the same. A claim replicates on a model only if it holds on every seed.

# %% tags=["hide-input"]
import json

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from myst_nb import glue

from ccs import headsets, llm, models, plots, pruning, replication, scores, textspan, world

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
spec = models.spec(model)
every = headsets.all_heads(spec.layers, spec.heads)
labeler = llm.make(backend, pool=pool, calibration=calibration, scored=model)
eval_sets, clfs, rows, heads, points = None, None, [], {}, []
for s in analysis_seeds:
    analysis = textspan.analyse(model, images=images, pool=pool, texts=texts, seed=s, progress=False,
                                untrained=weights == "random")
    if eval_sets is None:
        eval_sets = pruning.world_sets(eval_images, eval_seed, ["test"])
        clfs = pruning.classifiers(model, analysis.model, analysis.tokenizer, world.tasks())
    sources = headsets.all_sources(scores.score_heads(analysis.records(), labeler), analysis, model=model,
                                   every_head=every, seeds=seeds)
    conditions = {"original": []} | {f"{src.source}: {k}": v for src in sources for k, v in src.conditions().items()
                                     if k != "original" and not k.startswith("equal")}
    r = pruning.run(analysis.model, model, eval_sets, clfs, conditions, progress=False)
    for src in sources:
        claims = pruning.central_claims(r, "test", measure, prefix=f"{src.source}: ")
        heads[f"{s}/{src.source}"] = src.high
        points += [{"analysis seed": s, "sets": src.source, "claim": k, "estimate": 100 * v[0], "lo": 100 * v[1],
                    "hi": 100 * v[2]} for k, v in claims.items()]
        rows.append({"analysis seed": s, "sets": src.source,
                     "test": src.test,
                     **{k: pruning.interval_text(v) for k, v in claims.items()},
                     **{f"{k} verdict": pruning.verdict([v]) for k, v in claims.items()},
                     "verdict": pruning.verdict(claims.values()), "high heads": " ".join(src.high)})
by_seed = pd.DataFrame(rows)
by_seed.set_index(["sets", "analysis seed"]).sort_index(level=0, sort_remaining=False)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The central test on every analysis seed: the extra drop in the page's measure from pruning the high set, against the low set (left) and against random sets (right), per source of sets and seed, with 95 % intervals (percentage points; the claim predicts every interval above zero).", "name": "fig-seeds"}, "image": {"alt": "Two panels of intervals, one row per source of sets and analysis seed, for high against low and high against random."}}
pts = pd.DataFrame(points)
pts["row"] = pts["sets"] + ", seed " + pts["analysis seed"].astype(str)
fig, axes = plt.subplots(1, 2, figsize=(10, 0.35 * pts["row"].nunique() + 1.4), sharey=True)
palette = dict(zip(pts["sets"].unique(), sns.color_palette(n_colors=pts["sets"].nunique())))
for ax, (claim, sub) in zip(axes, pts.groupby("claim", sort=False)):
    for y, row in enumerate(sub.itertuples()):
        ax.errorbar(row.estimate, y, xerr=[[row.estimate - row.lo], [row.hi - row.estimate]], fmt="o",
                    color=palette[row.sets], capsize=3)
    ax.set_yticks(range(len(sub)), sub["row"], fontsize=8)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set(title=claim, xlabel="extra drop of the high set (pp)")
axes[0].invert_yaxis()
fig.suptitle(f"{model}: the central test on {len(analysis_seeds)} analysis seeds", y=1.02)
plt.show()

# %% [markdown]
# ## Agreement across seeds
#
# Per source of sets and claim: the verdict on each seed, and whether the claim holds (is
# *supported*) on every one of them.

# %% tags=["hide-input"]
agreement = replication.seed_agreement(by_seed, ["high vs low", "high vs random"])
glue("seeds-agreement", agreement, display=False)
glue("seeds-run-replicated", agreement.loc[("this run", "high vs random"), "holds on every seed"], display=False)
agreement

# %% tags=["hide-input"]
stable = {src: len({heads[f"{s}/{src}"] and " ".join(heads[f"{s}/{src}"]) for s in analysis_seeds})
          for src in by_seed["sets"].unique()}
print("different high sets across the seeds, per source: " + ", ".join(f"{k} {v}" for k, v in stable.items()))

# %% tags=["remove-cell", "hide-input"]
summary = {
    "model": model, "weights": weights, "analysis_seeds": analysis_seeds, "seeds": seeds, "measure": measure,
    "eval_images": eval_images, "eval_seed": eval_seed, "by_seed": by_seed.to_dict("records"),
    "seed_agreement": replication.agreement_record(agreement),
}
with open("seeds.json", "w") as f:
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
