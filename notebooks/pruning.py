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
# # Soft pruning: do the most consistent heads matter most?
#
# **The paper's claim, here a hypothesis.** Pruning the heads with the highest Concept Consistency
# Score (CCS = 5) hurts zero-shot accuracy far more than pruning the heads with low CCS (≤ 1), or
# the same number of randomly chosen heads.
#
# *Soft pruning* zeroes a head's columns of its layer's attention out-projection, so the head adds
# nothing to the residual stream, in a real forward pass of the image tower (its total effect: the
# layers after it see the change). Every image is scored under every condition, so two conditions are
# compared on the same images, with paired bootstrap intervals (for random baselines, over the draws
# too). Two measures: top-1 accuracy, and
# the probability the model gives the true class, which still moves when top-1 sits at the ceiling.
# The page ends with a verdict computed from the intervals, not written by hand. The code behind every
# table and figure is folded away ("Show code cell source" unfolds it), except the one call the page
# is about: `pruning.run`, which runs the pruned forward passes.

# %% tags=["hide-input"]
import json
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from ccs import ablate, carriers, headsets, llm, models, plots, pruning, record, scores, study, verdicts, world

plots.style()
pd.set_option("display.width", 200, "display.max_colwidth", 120, "display.precision", 2)

# %% tags=["parameters", "hide-input"]
model = "ccs-tiny"  # [model] a registered model (`ccs models`)
weights = "trained"  # [trained | random] "trained", or "random": the same architecture untrained (tests the path, no download)
backend = "embedding"  # [embedding | openai] labeler and judge: "embedding" (offline) or "openai"
pool = "world"  # [pool] TextSpan's description pool
calibration = "pool"  # [pool | world | real | lenient] the offline judge's calibration: "pool" (the one for this pool), "world", "real" or "lenient"
images = 1000  # [at least 2] images TextSpan decomposes (the same analysis as the TextSpan and CCS pages)
texts = 5  # [at least 1]
seed = 0  # [at least 0]
sets = "run"  # [run | truth | function | paper] where the high and low heads come from: "run" (this run's CCS), "truth" (the true CCS), "function" (what the heads compute), "paper"
ablation = "zero"  # [zero | mean] "zero" (the paper's soft pruning) or "mean" (the head's mean output instead)
seeds = 5  # [at least 1] random and equal-count draws
eval_images = 1000  # [at least 2] fresh concept-world images per split for the zero-shot tasks
eval_seed = 1  # [at least 0]
splits = ["test", "sketch", "noisy", "novel-shades"]  # [list of split]
measure = "p_true"  # [p_true | correct] the verdict's measure: "p_true" (probability of the true class) or "correct"

# %% [markdown]
# ## The heads and their sets
#
# The heads are those of the TextSpan and CCS pages (the same analysis). The paper's test prunes
# **every** head with CCS = 5 (*high*) against **every** head with CCS ≤ 1 (*low*); its baselines are
# *random* (as many heads as the high set, drawn from the analysed layers without the high heads, over
# several seeds) and *equal-count* (as many high as low heads). The test can be formed only when both
# categories hold at least two heads; the table below counts them beside the paper's models. Where it
# cannot, the page says so, gives no verdict on the paper's claim, and compares *ranked* sets instead
# (the highest against the lowest CCS) as a secondary analysis; where such a cut runs through heads
# tied at one CCS, the tied heads are drawn at random in every draw and the intervals cover the draws.

# %% tags=["hide-input"]
print(models.banner(model, weights))
st = study.load(
    model,
    weights=weights,
    images=images,
    pool=pool,
    texts=texts,
    seed=seed,
    backend=backend,
    calibration=calibration,
    sets=sets,
    seeds=seeds,
)
analysis, labeler, table, spec, every, truth = st.analysis, st.labeler, st.table, st.spec, st.every, st.truth
hs, other, fn = st.sets, st.other, st.fn  # the page's sets; the other text source's and the function's beside them
counts = scores.category_counts(table)
print(
    f"{model}: {len(table)} analysed heads; this run's categories: {counts['high']} high, "
    f"{counts['moderate']} moderate, {counts['low']} low, {counts['unknown']} unknown"
)
print(f"sets from: {hs.source}; {headsets.headline(hs)}; random heads from the {hs.random_pool}; ablation: {ablation}")
plots.notes(hs.notes)
hs.summary()

# %% tags=["hide-input"]
side = min(seeds, headsets.SECONDARY_DRAWS)  # draws of the sets shown beside the page's own
text_sources = [s_ for _, s_ in st.sources() if s_.source != "function"]
glue("pruning-test", headsets.headline(hs), display=False)
print("Heads in the paper's categories, this model beside the paper's (a share of the analysed heads):")
st.beside_paper().round(1)

# %% [markdown]
# On the concept world every pool line knows the concept that generated it, so each head also has a
# *true* CCS (how many of its texts come from its majority concept). How far do the sets agree?

# %% tags=["hide-input"]
if other is not None:
    agree = pd.DataFrame(
        [
            {
                "set": k,
                hs.source: " ".join(getattr(hs, k)),
                other.source: " ".join(getattr(other, k)),
                "shared": len(set(getattr(hs, k)) & set(getattr(other, k))),
                "Jaccard": headsets.jaccard(getattr(hs, k), getattr(other, k)),
            }
            for k in ("high", "low")
        ]
    )
    rho = scores.agreement(table["ccs"].fillna(0).to_numpy(), truth["ccs"].to_numpy())["spearman"]
    print(f"Spearman's rho between this run's CCS and the true CCS over the {len(table)} heads: {rho:.2f}")
else:
    agree = pd.DataFrame()
    print(f"the pool {pool!r} carries no ground truth" if truth is None else f"no text source beside the {hs.source} sets")
agree.round(2)

# %% [markdown]
# ## Pruning
#
# Every condition runs the image tower with its heads pruned on every split; each head alone is pruned
# on the test split (for the per-head importance below).

# %% tags=["hide-input"]
model_, tokenizer = analysis.model, analysis.tokenizer
eval_sets = pruning.world_sets(eval_images, eval_seed, splits)
clfs = pruning.classifiers(model, model_, tokenizer, world.tasks())
means = ablate.head_means(model_, eval_sets["test"].images, layers=spec.analysed_layers) if ablation == "mean" else None
conditions = hs.conditions()
singles = {f"head/{n}": [n] for n in table["name"]}
extra = {carriers.ALL_ANALYSED: list(table["name"]), **(carriers.without_conditions(hs.high) if not hs.ties else {})}
if other is not None:  # the other source's sets, on the test split
    extra |= {f"{other.source}: {k}": v for k, v in other.conditions().items() if k != "original"}
    extra |= carriers.without_conditions(other.high, f"{other.source}: high") if not other.ties else {}
lenient = None  # the sets the uncalibrated (lenient) judge would pick: what calibration changes
if backend == "embedding" and calibration != "lenient" and other is not None:
    lenient = headsets.from_source(
        "run",
        scores.score_heads(analysis.records(), llm.make("embedding", calibration="lenient")),
        model=model,
        every_head=every,
        seeds=side,
    )
    extra |= {f"lenient judge: {k}": v for k, v in lenient.conditions().items() if k != "original" and not k.startswith("equal")}
if fn is not None:  # the third source: the most against the least specialised heads
    extra |= {f"function: {k}": v for k, v in fn.conditions().items() if k != "original"}
# the paper's own comparisons run on every split; equal-count draws, single heads and the checks below on the test split
only = {c: ["test"] for c in {**singles, **extra, **{k: v for k, v in conditions.items() if k.startswith("equal-")}}}
groups = ["original", "high", "low", "random"] + (["equal-high", "equal-low"] if "equal-high/0" in conditions else [])

# %%
r = pruning.run(
    model_, model, eval_sets, clfs, {**conditions, **singles, **extra}, mode=ablation, means=means, only=only, progress=False
)
print(f"{len(r.conditions())} conditions, {eval_images} images per split, splits: {', '.join(splits)}")

# %% [markdown]
# ## Zero-shot accuracy under pruning, per task
#
# The drop is the unpruned score minus the pruned one (positive: pruning hurts), in percentage points,
# with its paired 95 % bootstrap interval over the images; *random* averages its draws image by image,
# and its interval resamples the draws as well as the images (both are chance: another set of draws
# would give another baseline); the draws' standard deviation is given too.

# %% tags=["hide-input"]
test_table = pruning.drop_table(r, groups, "test")
print("top-1 accuracy (%) per task and condition")
test_table.pivot(index="task", columns="condition", values="top-1 %")[groups].round(1)

# %% tags=["hide-input"]
print(f"drop in {pruning.MEASURES[measure]} (pp) per task, pruned set against the unpruned model")
label = {"p_true": "p(true)", "correct": "top-1"}[measure]
test_table.pivot(index="task", columns="condition", values=f"{label} drop")[groups[1:]].round(1)

# %% tags=["hide-input"]
print("all tasks together, with 95 % intervals of the drops (and the seeds' standard deviation)")
test_table[(test_table.task == "all") & (test_table.condition != "original")].drop(columns="task").set_index("condition").round(1)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The cost of pruning each set, per task of the test split and over all tasks: drop in the page's measure, by default the probability of the true class (percentage points; positive means pruning hurts), with paired 95 % bootstrap intervals over the images. *random* is the mean over its draws.", "name": "fig-pruning-per-task"}, "image": {"alt": "Grouped bar chart: for each task and for all tasks together, the drop when the high, low and random head sets are pruned, with error bars."}}
tasks = r.tasks("test")
rows = []
for name in groups[1:]:
    for task in ["all", *tasks]:
        d = r.drop(name, "test", measure, None if task == "all" else [task])
        rows.append({"condition": name, "task": task, "drop": 100 * d[0], "lo": 100 * d[1], "hi": 100 * d[2]})
bars = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(11, 4))
sns.barplot(bars, x="task", y="drop", hue="condition", ax=ax, errorbar=None)
for patch_group, (name, sub) in zip(ax.containers, bars.groupby("condition", sort=False)):
    xs = [p.get_x() + p.get_width() / 2 for p in patch_group]
    ax.errorbar(
        xs, sub["drop"], yerr=[sub["drop"] - sub["lo"], sub["hi"] - sub["drop"]], fmt="none", ecolor="0.2", capsize=2, lw=1
    )
ax.axhline(0, color="0.3", lw=0.8)
ax.set(
    ylabel=f"drop in {pruning.MEASURES[measure]} (pp)",
    xlabel="task",
    title=f"{model}: cost of pruning each set ({hs.source} sets, {ablation} ablation), 95 % intervals",
)
ax.legend(title="pruned", ncols=len(groups) - 1, fontsize=8)
plt.show()

# %% [markdown]
# ## On the shifted splits
#
# The same conditions on the sketch, noisy and novel-shades splits (the same attributes as the test
# images, drawn differently; texture is not scored on sketches, which show outlines only).

# %% tags=["hide-input"]
shift = []
for split in splits:
    for name in ("high", "low", "random"):
        d = r.drop(name, split, measure)
        shift.append(
            {
                "split": split,
                "condition": name,
                "score %": 100 * r.value(name, split, measure),
                "drop": 100 * d[0],
                "drop CI": f"[{100 * d[1]:.1f}, {100 * d[2]:.1f}]",
            }
        )
shift = pd.DataFrame(shift)
print(
    f"{pruning.MEASURES[measure]}, all tasks; original:",
    ", ".join(f"{s} {100 * r.value('original', s, measure):.1f} %" for s in splits),
)
shift.set_index(["split", "condition"]).round(1)

# %% [markdown]
# ## Verdict
#
# The hypothesis predicts two positive differences on the test split, over all tasks: the drop from
# pruning the high set minus the drop from pruning the low set, and minus the drop from pruning
# random sets (their mean over the draws, the interval resampling draws and images). **Supported**
# when both intervals lie above zero, **contradicted** when one lies wholly below zero (pruning the
# high heads then costs *less*), **inconclusive** otherwise. {numref}`fig-pruning-answer` shows the
# three drops the verdict compares, on the test split and on the shifted ones.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The page's answer in one figure: the drop in the page's measure (by default the probability of the true class) over all tasks when the high-CCS, low-CCS or random head sets are pruned, on the test split and the three shifted splits (percentage points, paired 95 % bootstrap intervals over the images).", "name": "fig-pruning-answer"}, "image": {"alt": "Bar chart: for each split, the drop from pruning the high, low and random sets, with error bars; the claim predicts the high bar tallest."}}
answer_bars = shift.assign(
    lo=[100 * r.drop(c, s, measure)[1] for s, c in zip(shift["split"], shift["condition"])],
    hi=[100 * r.drop(c, s, measure)[2] for s, c in zip(shift["split"], shift["condition"])],
)
fig, ax = plt.subplots(figsize=(8, 3.6))
sns.barplot(answer_bars, x="split", y="drop", hue="condition", ax=ax, errorbar=None)
for patch_group, (_, sub) in zip(ax.containers, answer_bars.groupby("condition", sort=False)):
    ax.errorbar(
        [p.get_x() + p.get_width() / 2 for p in patch_group],
        sub["drop"],
        yerr=[sub["drop"] - sub["lo"], sub["hi"] - sub["drop"]],
        fmt="none",
        ecolor="0.2",
        capsize=3,
        lw=1,
    )
ax.axhline(0, color="0.3", lw=0.8)
ax.set(
    xlabel="",
    ylabel=f"drop (pp) in the\n{pruning.MEASURES[measure]}",
    title=f"{model}: pruning the high vs low vs random heads ({hs.source} sets, {hs.rule}, 95 % intervals)",
)
ax.legend(title="pruned", ncols=3, fontsize=8)
fig.tight_layout()
fig.savefig("pruning-answer.png", dpi=110)  # beside pruning.json: the chapters show it with a caption and alt text
plt.show()

# %% tags=["hide-input"]
pairs = {"high vs low": ("low", "high"), "high vs random": ("random", "high")}
if "equal-high/0" in conditions:
    pairs["high vs low, equal count"] = ("equal-low", "equal-high")
claims = {k: r.compare(a, b, "test", measure) for k, (a, b) in pairs.items()}
top1 = {k: r.compare(a, b, "test", "correct") for k, (a, b) in pairs.items()}
verdict = verdicts.verdict(claims.values())


def signed(d: tuple[float, float, float]) -> str:
    """'+4.6 [4.1, 5.1] pp' for an (estimate, low, high) triple of fractions."""
    return f"{100 * d[0]:+.1f} [{100 * d[1]:.1f}, {100 * d[2]:.1f}] pp".replace("-", "\u2212")


glue("pruning-verdict", verdict, display=False)
glue("pruning-high-vs-low", signed(claims["high vs low"]), display=False)
glue("pruning-high-vs-random", signed(claims["high vs random"]), display=False)
pd.DataFrame(
    {
        "extra drop of high (pp), " + pruning.MEASURES[measure]: {k: verdicts.interval_text(v) for k, v in claims.items()},
        "same, top-1 accuracy": {k: verdicts.interval_text(v) for k, v in top1.items()},
    }
)

# %% tags=["hide-input"]
if hs.paper_test:
    print(
        f"Verdict on {model}, {headsets.headline(hs)} ({ablation} ablation, {pruning.MEASURES[measure]}): "
        f"the paper's claim is {verdict.upper()}."
    )
else:
    print(
        f"No verdict on the paper's claim for {model}: {hs.why_not_paper()}.\nSecondary analysis ({hs.source} "
        f"sets, the {len(hs.high)} highest- against the {len(hs.low)} lowest-CCS heads, {ablation} ablation): "
        f"{verdict.upper()}."
    )

# %% [markdown]
# ### What carries the verdict
#
# A set's cost can come from one task whose heads the set happens to hold (several heads of one
# concept in the high set), or from one head, rather than from consistency as such. The same claims,
# per task, over all tasks but one, and with each head of the high set put back in turn; a task that
# pruning every analysed head does not move cannot show anything and gets no verdict of its own.

# %% tags=["hide-input"]
skip = carriers.untestable(r, "test", measure)
for task, why in skip.items():
    print(textwrap.fill(f"{task}: {why}; no verdict on it.", 110))
by_task = carriers.per_task(r, pairs, "test", measure)
loto = carriers.leave_one_task_out(r, pairs, "test", measure)
loho = (
    carriers.leave_one_head_out(r, {k: pairs[k] for k in ("high vs low", "high vs random")}, hs.high, "test", measure)
    if not hs.ties
    else pd.DataFrame(columns=["verdict"])
)  # with tie draws no one high set to leave a head out of
carry = carriers.carried(verdict, loto, loho)
glue("pruning-carried", carry["text"], display=False)
glue("pruning-rule", headsets.headline(hs), display=False)
glue(
    "pruning-untestable",
    "; ".join(f"{t}: {why}" for t, why in skip.items()) or "none: pruning every analysed head moves every task",
    display=False,
)
print(f"{hs.source} sets: {carry['text']}")
display(by_task)
display(loto)
loho

# %% [markdown]
# ### The same test with the other source of sets

# %% tags=["hide-input"]
if other is not None:
    pre = f"{other.source}: "
    other_pairs = {"high vs low": (pre + "low", pre + "high"), "high vs random": (pre + "random", pre + "high")}
    other_claims = {k: r.compare(a, b, "test", measure) for k, (a, b) in other_pairs.items()}
    other_verdict = verdicts.verdict(other_claims.values())
    other_carry = carriers.carried(
        other_verdict,
        carriers.leave_one_task_out(r, other_pairs, "test", measure),
        carriers.leave_one_head_out(r, other_pairs, other.high, "test", measure, pre + "high")
        if not other.ties
        else pd.DataFrame(columns=["verdict"]),
    )
    print(
        f"{other.source} sets ({headsets.headline(other)}):",
        "; ".join(f"{k}: {verdicts.interval_text(v)}" for k, v in other_claims.items()),
        f"-> {other_carry['text']}",
    )
    glue("pruning-other-verdict", other_carry["text"], display=False)
    glue("pruning-other-high-vs-low", signed(other_claims["high vs low"]), display=False)
    glue("pruning-other-high-vs-random", signed(other_claims["high vs random"]), display=False)
    plots.notes(other.notes)
    display(carriers.per_task(r, other_pairs, "test", measure))
else:
    other_claims, other_carry = {}, None
    for key in ("pruning-other-verdict", "pruning-other-high-vs-low", "pruning-other-high-vs-random"):
        glue(key, "n/a (the pool carries no ground truth)", display=False)
    print("no second source of sets for this pool")

# %% [markdown]
# ### The same test with the heads' function
#
# The third source of sets knows nothing of texts: the heads whose direct contribution one world
# attribute explains best (the most *specialised*, by the R² of the CCS page) against the least
# specialised, in the paper's proportions. If consistency of descriptions tracks doing one thing,
# this source and the CCS sources give the same answer.

# %% tags=["hide-input"]
fn_claims, fn_verdict = {}, None
if fn is not None:
    fn_pairs = {"high vs low": ("function: low", "function: high"), "high vs random": ("function: random", "function: high")}
    fn_claims = {k: r.compare(a, b, "test", measure) for k, (a, b) in fn_pairs.items()}
    fn_verdict = verdicts.verdict(fn_claims.values())
    print(
        f"function sets ({len(fn.high)} most, {len(fn.low)} least specialised):",
        "; ".join(f"{k}: {verdicts.interval_text(v)}" for k, v in fn_claims.items()),
        f"-> {fn_verdict}",
    )
    plots.notes(fn.notes)
    display(fn.summary())
glue("pruning-function-verdict", fn_verdict or "n/a (the images carry no ground truth)", display=False)

# %% [markdown]
# ### What a lenient judge would have picked
#
# An uncalibrated judge (`calibration=lenient`) accepts a text that is only loosely about the label,
# so it calls heads high whose texts mostly, but not all, share a concept. Its sets, pruned on the test
# split, in the same test as the page's verdict (high against low and against random):

# %% tags=["hide-input"]
if lenient is not None:
    lenient_pairs = {
        "high vs low": ("lenient judge: low", "lenient judge: high"),
        "high vs random": ("lenient judge: random", "lenient judge: high"),
    }
    lenient_claims = {k: r.compare(a, b, "test", measure) for k, (a, b) in lenient_pairs.items()}
    lenient_verdict = verdicts.verdict(lenient_claims.values())
    print(
        f"lenient judge's sets ({headsets.headline(lenient)}; {len(set(lenient.high) & set(hs.high))} of its "
        f"{len(lenient.high)} high heads are in this page's high set): "
        + "; ".join(f"{k} {verdicts.interval_text(v)}" for k, v in lenient_claims.items())
        + f" -> {lenient_verdict}"
    )
    glue("pruning-lenient-high-vs-low", signed(lenient_claims["high vs low"]), display=False)
    glue("pruning-lenient-high-vs-random", signed(lenient_claims["high vs random"]), display=False)
    glue("pruning-lenient-verdict", lenient_verdict, display=False)
    display(carriers.per_task(r, lenient_pairs, "test", measure))
else:
    for key in ("pruning-lenient-high-vs-low", "pruning-lenient-high-vs-random", "pruning-lenient-verdict"):
        glue(key, "n/a (this page's judge is the lenient one, or there is no ground truth)", display=False)
    print("no lenient comparison on this page")

# %% [markdown]
# ## The paper's numbers
#
# Zero-shot top-1 (%) on CIFAR-10, CIFAR-100 and Food-101 as published, unpruned and with the high or
# low heads pruned, and high against random. A run of a paper model measures the same conditions on
# those datasets when they are on disk (`ccs data` says where; `ccs data fetch CIFAR-10`), and puts its
# numbers in the same table, blank where it has none.

# %% tags=["hide-input"]
paper = models.paper()
real = pruning.real_sets(model, ["CIFAR-10", "CIFAR-100", "Food-101"], eval_images, eval_seed)
for name, why in real.missing.items():
    print(f"{name}: not measured ({why})")
if real.sets:  # the paper's datasets on disk: the same conditions, on them
    clfs.update(pruning.classifiers(model, model_, tokenizer, real.tasks))
    pruning.run(
        model_,
        model,
        real.sets,
        clfs,
        {k: v for k, v in conditions.items() if pruning.group(k) in groups[:4]},
        mode=ablation,
        means=means,
        progress=False,
        results=r,
    )
pruning.beside_paper(paper["pruning_high_low"], model, r, real.sets, embedded=spec.embedded)

# %% tags=["hide-input"]
pd.DataFrame(
    [
        {"dataset": ds, "model": m, "high pruned": v[0], "random pruned": v[1]}
        for ds, per in paper["pruning_high_random"].items()
        for m, v in per.items()
    ]
).set_index(["dataset", "model"])

# %% [markdown]
# ## Does a head's CCS predict how much it matters?
#
# Beyond the paper: prune each analysed head alone and measure the drop over all tasks of the test
# split. If consistency and importance went together, the heads with higher CCS would cost more.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "One head pruned at a time: each analysed head's CCS against the drop in the page's measure (by default the probability of the true class) over all tasks of the test split when that head alone is pruned (percentage points), coloured by the head's label; the three costliest heads are named.", "name": "fig-pruning-per-head"}, "image": {"alt": "Strip plot of per-head pruning cost against CCS, one dot per head, coloured by concept label."}}
single = pd.DataFrame(
    [
        {"head": n, "CCS": c, "label": lab, "drop": 100 * r.drop(f"head/{n}", "test", measure)[0]}
        for n, c, lab in zip(table["name"], table["ccs"], table["label"])
    ]
)
rho, lo, hi = pruning.importance_rho(r, table.set_index("name")["ccs"], "test", measure)
fig, ax = plt.subplots(figsize=(6.5, 4))
np.random.seed(seed)  # seaborn's jitter draws from numpy's global generator: the same figure every run
sns.stripplot(single, x="CCS", y="drop", hue="label", ax=ax, size=7, jitter=0.15, native_scale=True)
for row in single.nlargest(3, "drop").itertuples():
    ax.annotate(row.head, (row.CCS, row.drop), xytext=(6, 0), textcoords="offset points", fontsize=8)
ax.set(
    xlabel="CCS",
    ylabel=f"drop in {pruning.MEASURES[measure]} (pp)",
    title=f"{model}: one head pruned at a time (Spearman ρ = {rho:.2f})",
)
ax.legend(fontsize=7, title="label", loc="upper left")
plt.show()


# %% tags=["hide-input"]
def importance_answer(lo, hi):
    return (
        "yes: higher-CCS heads cost more"
        if lo > 0
        else "no: higher-CCS heads cost less"
        if hi < 0
        else "not detectably: the interval includes zero"
    )


print(f"Spearman's rho (CCS, drop) = {rho:.2f} [{lo:.2f}, {hi:.2f}] over {len(single)} heads -> {importance_answer(lo, hi)}")
truth_rho = pruning.importance_rho(r, truth.set_index("name")["ccs"], "test", measure) if truth is not None else None
glue(
    "pruning-importance", f"ρ = {rho:.2f} [{lo:.2f}, {hi:.2f}], {importance_answer(lo, hi)}".replace("-", "\u2212"), display=False
)
if truth_rho is not None:
    print(
        f"with the true CCS: rho = {truth_rho[0]:.2f} [{truth_rho[1]:.2f}, {truth_rho[2]:.2f}] -> "
        f"{importance_answer(*truth_rho[1:])}"
    )
single.sort_values("drop", ascending=False).head(8).round(2)

# %% tags=["remove-cell", "hide-input"]
summary = {
    "model": model,
    "weights": weights,
    "sets": hs.source,
    "rule": hs.rule,
    "paper_test": hs.paper_test,
    "test": headsets.headline(hs),
    "category_counts_by_source": {s.source: s.counts for s in text_sources},
    "random_pool": hs.random_pool,
    "ablation": ablation,
    "measure": measure,
    "notes": hs.notes,
    "eval_images": eval_images,
    "eval_seed": eval_seed,
    "heads": {"high": hs.high, "low": hs.low, "random": hs.random, "equal": hs.equal, "tie_draws": hs.ties},
    "category_counts": counts,
    "agreement_with_other_sets": agree.to_dict("records"),
    "drops": {
        split: {name: dict(zip(("drop", "low", "high"), r.drop(name, split, measure))) for name in ("high", "low", "random")}
        for split in splits
    },
    "test_table": test_table.to_dict("records"),
    "claims": {k: dict(zip(("difference", "low", "high"), v)) for k, v in claims.items()},
    "claims_top1": {k: dict(zip(("difference", "low", "high"), v)) for k, v in top1.items()},
    "verdict": verdict,
    "carried": carry,
    "untestable_tasks": skip,
    "per_task": by_task.reset_index().to_dict("records"),
    "other_sets": other.source if other is not None else None,
    "other_sets_claims": {k: dict(zip(("difference", "low", "high"), v)) for k, v in other_claims.items()},
    "other_sets_verdict": other_carry,
    "labeler": llm.describe(labeler),
    "seeds": seeds,
    "per_head": single.to_dict("records"),
    "ccs_importance_spearman": {"rho": rho, "low": lo, "high": hi},
    "ccs_importance_spearman_truth": dict(zip(("rho", "low", "high"), truth_rho)) if truth_rho else None,
    # the claims for the replication page (ccs.replication), per source of sets
    "replication": {
        hs.source: {
            "pruning-high-vs-low": record.row(claims["high vs low"], test=hs.test),
            "pruning-high-vs-random": record.row(claims["high vs random"], test=hs.test),
        },
        **(
            {
                other.source: {
                    "pruning-high-vs-low": record.row(other_claims["high vs low"], test=other.test),
                    "pruning-high-vs-random": record.row(other_claims["high vs random"], test=other.test),
                }
            }
            if other is not None
            else {}
        ),
        **(
            {
                fn.source: {
                    "pruning-high-vs-low": record.row(fn_claims["high vs low"], test=fn.test),
                    "pruning-high-vs-random": record.row(fn_claims["high vs random"], test=fn.test),
                }
            }
            if fn is not None
            else {}
        ),
    },
    "function_sets": {
        "high": fn.high,
        "low": fn.low,
        "claims": {k: dict(zip(("difference", "low", "high"), v)) for k, v in fn_claims.items()},
        "verdict": fn_verdict,
    }
    if fn is not None
    else None,
    # this run's rows of the paper's tables, for the paper-vs-book page (ccs.paper_tables)
    "paper_tables": {
        "pruning_high_low": pruning.run_values(r, real.sets),
        "pruning_high_random": pruning.run_values(r, real.sets, ("high", "random")),
    },
}
summary["replication"].setdefault("this run", {})["importance-rho"] = record.row((rho, lo, hi))
if truth_rho is not None:
    summary["replication"].setdefault("ground truth", {})["importance-rho"] = record.row(truth_rho)
with open("pruning.json", "w") as f:
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
