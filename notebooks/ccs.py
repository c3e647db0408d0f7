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
# # Concept labels and the Concept Consistency Score
#
# TextSpan describes every analysed head by the 5 texts of a description pool that best span its
# output. The paper then asks an LLM, shown a few hand-made examples, for the **one concept** those
# texts share (the head's label), asks an LLM judge whether **each** text matches that label, and
# counts the matches:
#
# $$\mathrm{CCS}(h) = \sum_{i=1}^{5} \mathrm{judge}(t_i, \mathrm{label}(h)) \in \{0, \dots, 5\},$$
#
# $$\mathrm{CCS@}K = \frac{|\{h : \mathrm{CCS}(h) = K\}|}{|\{h\}|}.$$
#
# Heads with CCS = 5 are *high*, CCS = 3 *moderate* and CCS ≤ 1 *low*. On the concept world we can
# do what the paper could not: every pool line keeps the concept that generated it, so the labeler
# and the judge are scored against ground truth, and a text-free check asks how much of each head's
# output variance each ground-truth attribute of the images explains.
#
# **What this page establishes** for the model under study: how many heads are high, moderate and low
# (the sets the pruning pages remove), and how far this run's CCS can be trusted, measured against the
# world's ground truth. The code behind the tables and figures is folded away; the one call the page
# is about, `scores.score_heads` (label, judge and count every head), is shown.

# %% tags=["hide-input"]
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from ccs import headsets, intervals, llm, models, plots, record, scores, textspan, verdicts

plots.style()
pd.set_option("display.width", 160, "display.max_colwidth", 200)

# %% tags=["parameters", "hide-input"]
model = "ccs-tiny"  # [model] a registered model (`ccs models`)
weights = "trained"  # [trained | random] "trained", or "random": the same architecture untrained (tests the path, no download)
backend = "embedding"  # [embedding | openai] "embedding" (offline) or "openai" (any compatible endpoint, key from OPENAI_API_KEY)
judge_model = "gpt-4o-mini"  # [text] endpoint model of the openai backend
llm_timeout = 15.0  # [more than 0] seconds the openai backend waits for each reply
llm_retries = 2  # [at least 0] retries of the openai backend per question (an endpoint still failing stops the run)
pool = "world"  # [pool] TextSpan's pool: "world", "textspan" (the paper's 3,498 descriptions), a file or a URL
calibration = "pool"  # [pool | world | real | lenient] the offline judge's calibration: "pool" (the one for this pool), "world", "real" or "lenient"
images = 1000  # [at least 2] concept-world images TextSpan decomposes
texts = 5  # [at least 1] texts per head
seed = 0  # [at least 0]

# %% [markdown]
# ## The heads, their labels and their CCS
#
# TextSpan's step is the TextSpan page's (the same run). Each head's texts are
# labelled, then judged one by one against the label.

# %% tags=["hide-input"]
print(models.banner(model, weights))
analysis = textspan.analyse(
    model, images=images, pool=pool, texts=texts, seed=seed, progress=False, untrained=weights == "random"
)
labeler = llm.make(
    backend,
    pool=pool,
    calibration=calibration,
    scored=model,
    **({"model": judge_model, "timeout": llm_timeout, "retries": llm_retries} if backend == "openai" else {}),
)

# %%
table = scores.score_heads(analysis.records(), labeler)
table["category"] = [scores.category(c) or "" for c in table["ccs"]]
print(
    f"{model}: {len(table)} heads of layers {sorted(int(x) for x in table.layer.unique())}, labelled by the "
    f"{backend} backend" + (f" ({judge_model})" if backend == "openai" else "")
)

# %% [markdown]
# Every head with its label, its CCS and its five texts in TextSpan's order, each marked ✓ when the
# judge finds that it matches the label and ✗ when not.

# %% tags=["hide-input"]
pd.DataFrame(
    {
        "head": table["name"],
        "label": table["label"],
        "CCS": ["-" if f else int(c) for f, c in zip(table["flagged"], table["ccs"])],
        "category": table["category"],
        "texts (✓ matches the label)": [
            " · ".join(f"{'✓' if j else '✗'} {t}" for t, j in zip(ts_, js))
            for ts_, js in zip(table["texts"], table["judgements"])
        ],
    }
).set_index("head")

# %% [markdown]
# ## CCS across the layers
#
# Each cell is one head: its CCS (colour) and its label. Every head gets a label, as in the paper; a
# head whose texts share no concept is judged low. Only an LLM backend whose answers still failed
# validation after its retries leaves a head `unknown` (grey, not scored).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "CCS per head: one cell per analysed head (rows: layers, columns: heads), coloured by its CCS (0 to 5) and annotated with its label and score.", "name": "fig-ccs-grid"}, "image": {"alt": "Heatmap of the CCS of every analysed head by layer and head index, each cell annotated with the head's concept label and score."}}
grid = table.pivot(index="layer", columns="head", values="ccs")
notes = table.pivot(index="layer", columns="head", values="label").astype(str)
notes = notes + "\n" + grid.map(lambda c: "-" if np.isnan(c) else str(int(c)))
fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2, 0.9 * grid.shape[0] + 1.2))
sns.heatmap(
    grid,
    annot=notes,
    fmt="",
    vmin=0,
    vmax=texts,
    cmap="viridis",
    ax=ax,
    annot_kws={"fontsize": 7},
    cbar_kws={"label": "CCS"},
    linewidths=0.5,
    linecolor="white",
)
ax.set_facecolor("0.85")
ax.grid(False)
for i, j in zip(*np.where(grid.isna().values)):  # seaborn leaves NaN cells unannotated
    ax.text(j + 0.5, i + 0.5, "unknown", ha="center", va="center", fontsize=7, color="0.3")
ax.set(title=f"{model}: CCS per head ({backend} labeler and judge)", xlabel="head", ylabel="layer")
plt.show()

# %% [markdown]
# ## CCS@K and the paper's categories

# %% tags=["hide-input"] mystnb={"figure": {"caption": "CCS@K: the share of the scored heads whose CCS equals K, for K from 0 to 5.", "name": "fig-ccs-at-k"}, "image": {"alt": "Bar chart of the share of heads at each CCS value from 0 to 5."}}
at_k = scores.ccs_at_all(table, texts)
flagged = int(table["flagged"].sum())
fig, ax = plt.subplots(figsize=(6, 3))
sns.barplot(x=list(at_k), y=list(at_k.values()), ax=ax, color=sns.color_palette()[0])
ax.set(xlabel="K", ylabel="CCS@K (share of scored heads)", title=f"{model}: CCS@K ({flagged} unknown heads not scored)")
plt.show()

# %% tags=["hide-input"]
pd.DataFrame({"K": list(at_k), "CCS@K": np.round(list(at_k.values()), 3)}).set_index("K")

# %% tags=["hide-input"]
counts = scores.category_counts(table)
paper_counts = models.paper()["head_counts"].get(model)
rows = pd.DataFrame(
    {
        "category": ["high (CCS = 5)", "moderate (CCS = 3)", "low (CCS <= 1)", "unknown"],
        "this run": [counts["high"], counts["moderate"], counts["low"], counts["unknown"]],
    }
)
if paper_counts:
    rows["paper"] = [paper_counts["high"], paper_counts["medium"], paper_counts["low"], "-"]
print(f"{len(table)} analysed heads")
display(rows.set_index("category"))
colour_heads = table[table["label"] == "colour"]
glue(
    "ccs-colour-heads",
    ", ".join(
        f"{n} (CCS {'-' if f else int(c)})" for n, f, c in zip(colour_heads["name"], colour_heads["flagged"], colour_heads["ccs"])
    )
    or "none",
    display=False,
)
glue("ccs-high-heads", ", ".join(table.loc[table["ccs"] == texts, "name"]) or "none", display=False)
glue(
    "ccs-counts",
    f"{counts['high']} high, {counts['moderate']} moderate, {counts['low']} low"
    + (f", {counts['unknown']} unknown" if counts["unknown"] else ""),
    display=False,
)
if paper_counts:  # the paper's published high and low heads beside ours
    published = models.paper()["heads"][model]
    for cat, ours in (("high", headsets.high_heads(table)), ("low", headsets.low_heads(table))):
        both = sorted(set(ours) & set(published[cat]))
        print(f"{cat}: {len(both)} of the paper's {len(published[cat])} heads are {cat} here too: {both}")

# %% [markdown]
# ## Labeler and judge against the concept world's ground truth
#
# Each world pool line was generated from one concept, so a head's true label is the majority concept
# of its 5 texts, and a text truly matches a label when it was generated from that concept
# (a narrower concept of the vocabulary counts for its family: *bird* for *animal*). Heads labelled
# `unknown` count as wrong labels and are not judged.

# %% tags=["hide-input"]
truth, truth_lenient = None, None
if "concepts" in table:
    truth = scores.ground_truth(table)
    glue("ccs-truth-rho", f"{truth['ccs_spearman']:.2f}", display=False)
    side = {f"this page ({llm.describe(labeler).get('calibration', backend)})": truth}
    if backend == "embedding" and labeler.calibration.startswith("world:"):  # the hand-written calibration alone
        side["world (hand-written only)"] = scores.ground_truth(
            scores.score_heads(analysis.records(), llm.make("embedding", calibration="world"))
        )
    if backend == "embedding" and labeler.calibration != "lenient":  # what the lenient judge would say
        truth_lenient = scores.ground_truth(scores.score_heads(analysis.records(), llm.make("embedding", calibration="lenient")))
        side["lenient judge"] = truth_lenient
    targets = {"label_accuracy": 0.85, "judge_kappa": 0.85, "ccs_spearman": 0.85}
    display(
        pd.DataFrame(side)
        .rename(index={"flagged": "unknown labels"})
        .assign(target=pd.Series({k: f"≥ {v}" for k, v in targets.items()}))
        .map(lambda v: f"{v:.3f}" if isinstance(v, float) else ("" if v is None or v != v else str(v)))
    )
    met = all(truth[k] >= v for k, v in targets.items())
    for name, t in (("calibrated", truth), ("lenient", truth_lenient)):  # for the exercises' answer key
        glue(
            f"ccs-{name}-figures",
            f"label accuracy {t['label_accuracy']:.2f}, judge κ {t['judge_kappa']:.2f}, CCS Spearman {t['ccs_spearman']:.2f}"
            if t
            else "n/a (not measured in this run)",
            display=False,
        )
    print(f"calibrated for the {pool} pool: {llm.describe(labeler)}")
    print("every target met" if met else "a target is missed: read the page's CCS with that in mind")
else:
    glue("ccs-truth-rho", "n/a (the pool carries no ground truth)", display=False)
    for name in ("calibrated", "lenient"):
        glue(f"ccs-{name}-figures", "n/a (the pool carries no ground truth)", display=False)
    print(f"the pool {pool!r} carries no ground-truth concepts")

# %% [markdown]
# With an LLM backend, the offline judge's verdicts on the same labels show how far the two judges
# agree (the paper compares its LLM judge with a human annotator the same way).

# %% tags=["hide-input"]
if backend != "embedding":
    offline_judge = llm.make("embedding", pool=pool, scored=model)
    pairs = [
        (j, offline_judge.judge(t, r.label)) for r in table.itertuples() if not r.flagged for t, j in zip(r.texts, r.judgements)
    ]
    agreement = scores.agreement([a for a, _ in pairs], [b for _, b in pairs])
    display(pd.Series(agreement, name="agreement").round(3).to_frame())
else:
    print("one judge only (the embedding backend): run with backend='openai' to compare\ntwo judges")

# %% [markdown]
# ### A text-free check: which attribute does each head encode?
#
# For every head, the share of the variance of its direct contribution over the world images that each
# ground-truth attribute explains ($R^2$ of a one-way analysis of variance on the head's output
# vector). A head whose label names its top-$R^2$ attribute describes what the head really does.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Which attribute each head encodes, without any text: the share of the variance of each head's direct contribution over the world images explained by each ground-truth attribute (R²), one row per head with its label.", "name": "fig-ccs-r2"}, "image": {"alt": "Heatmap of R² per head (rows, labelled with head name and concept label) and attribute (columns)."}}
function = scores.head_function(analysis.decomposition, analysis.batch.attributes, table["name"])
r2 = function[list(analysis.batch.attributes.columns)]
top = function["top"]
agree = scores.top_r2_agreement(list(table["label"]), r2)
fig, ax = plt.subplots(figsize=(0.8 * r2.shape[1] + 2, 0.22 * len(r2) + 1.2))
sns.heatmap(r2, vmin=0, vmax=max(0.05, float(r2.values.max())), cmap="mako", ax=ax, cbar_kws={"label": "R²"})
ax.set_yticks(np.arange(len(r2)) + 0.5, [f"{n} {l}" for n, l in zip(r2.index, table["label"])], fontsize=7)
ax.set(title=f"{model}: variance of each head explained by each attribute", xlabel="attribute")
plt.show()

# %% tags=["hide-input"]
print(f"label names the top-R² attribute for {agree:.2f} of the labelled heads")
pd.DataFrame(
    {
        "head": r2.index,
        "label": table["label"].values,
        "top attribute": top.values,
        "R²": r2.max(axis=1).round(2).values,
        "specialisation": function["share"].round(2).values,
    }
).set_index("head")

# %% [markdown]
# ### Does a consistent description find a head that does one thing?
#
# The paper's premise: a head whose five texts share one concept is a head that computes one thing.
# Here both sides can be measured. A head's *specialisation* is the share of what all the world's
# attributes explain of its output that its top attribute explains (1: one attribute explains all of
# it). If the premise holds, CCS rises with specialisation (Spearman's ρ with its bootstrap interval
# over the heads), and the label names the attribute the head encodes.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Each analysed head's CCS (this run's, left; the true CCS, right) against its functional specialisation: the share of the variance all world attributes explain of its output that its top attribute explains.", "name": "fig-ccs-function"}, "image": {"alt": "Two strip plots of functional specialisation against CCS, one dot per head, coloured by the head's top attribute."}}
premise = pd.DataFrame(
    {"head": table["name"], "CCS": table["ccs"], "specialisation": function["share"].values, "top attribute": top.values}
)
sources = {"this run's CCS": premise["CCS"]}
if "concepts" in table:
    sources["true CCS"] = headsets.truth_table(table)["ccs"].values
fig, axes = plt.subplots(1, len(sources), figsize=(5.5 * len(sources), 3.6), sharey=True, squeeze=False)
rows = []
for ax, (name, ccs_) in zip(axes[0], sources.items()):
    d = premise.assign(CCS=ccs_)
    keep = d["CCS"].notna() & d["specialisation"].notna()
    rho_, lo_, hi_ = intervals.spearman_ci(d.loc[keep, "CCS"], d.loc[keep, "specialisation"])
    rows.append(
        {
            "CCS": name,
            "Spearman ρ with specialisation": f"{rho_:.2f} [{lo_:.2f}, {hi_:.2f}]",
            "heads": int(keep.sum()),
            "verdict (ρ > 0)": verdicts.verdict([(rho_, lo_, hi_)]),
        }
    )
    np.random.seed(seed)  # seaborn's jitter: the same figure every run
    sns.stripplot(d[keep], x="CCS", y="specialisation", hue="top attribute", ax=ax, jitter=0.15, native_scale=True, size=6)
    ax.set(title=f"{name}: ρ = {rho_:.2f}", xlabel=name)
    ax.legend(fontsize=7, title="top attribute")
fig.suptitle(f"{model}: consistency of the description against specialisation of the head", y=1.02)
plt.show()
premise_table = pd.DataFrame(rows).set_index("CCS")
glue("ccs-premise", premise_table.iloc[-1]["Spearman ρ with specialisation"], display=False)
glue("ccs-label-names-top", f"{agree:.2f}", display=False)

# %% tags=["hide-input"]
premise_table

# %% [markdown]
# ## How good is the offline labeler?
#
# The `embedding` backend embeds each concept of a curated vocabulary of about 60 concepts as
# "*concept*: *description*" with a sentence-embedding model (all-MiniLM-L6-v2, shipped in a Python
# package, so nothing is downloaded). A text's score for a concept is its cosine similarity minus the
# concept's mean similarity to a background of varied descriptions, so that generic concepts stop
# matching everything. The label is the concept that is the best-scoring one for most of the 5 texts;
# the judge accepts a text whose score reaches a threshold and, where the calibration has a margin,
# lies within that margin of the text's best score for any concept (a text plainly about another
# concept does not match this one).
#
# Like the paper's in-context examples, each pool's calibration is fitted on heads that are never a
# scored model's own: real description pools on a development set of hand-written real-CLIP-style
# heads; the concept world on a small set of hand-written world-style heads phrased unlike the pool's
# lines, with a few hand-written example lines per concept (`world`). A trained model of this book is
# judged with `world:MODEL`, which adds, fitted leave-one-model-out on the heads of the book's *other*
# trained models only, one offset per concept (so that, say, "a heart icon" reads as the shape it is
# in this world rather than a symbol) and the judge's margin. The *lenient* judge uses one threshold
# for every pool and no margin. The first table measures the pool-independent ones on
# the held-out real-CLIP-style heads, written apart from both development sets; `incoherent_low` is
# the share of the heads that share no concept that come out low (CCS ≤ 1).

# %% tags=["hide-input"]
bench = []
for name, split in (("real", "dev"), ("real", "heldout"), ("lenient", "heldout"), ("world", "world_dev")):
    r = scores.evaluate(llm.make("embedding", calibration=name), llm.load_heads(split))
    bench.append({"calibration": name, "set": split, **{k: v for k, v in r.items() if k != "labels"}})
display(pd.DataFrame(bench).set_index(["calibration", "set"]).rename(columns={"flagged": "unknown labels"}).round(3))
display(pd.DataFrame(llm.calibrations()).T.drop(columns=["dev_heads"], errors="ignore"))
if getattr(labeler, "fitted_on", None):
    largest = sorted(labeler.offsets.items(), key=lambda kv: -abs(kv[1]))[:8]
    print(
        f"{labeler.calibration}: fitted on the heads of {', '.join(labeler.fitted_on)} (not {model}'s); "
        f"margin {labeler.margin}; {len(labeler.offsets)} concept offsets, the largest: "
        + ", ".join(f"{c} {o:+.3f}" for c, o in largest)
    )

# %% [markdown]
# A trained model's calibration is fitted without any line that occurs in this model's heads, but the
# lines come from one generator and one set of templates, so heads and lines of the same world are
# never far from what the calibration saw. Two more checks of the judge on lines this model's heads
# did not pick: an in-world line should match its own concept and not another one, and a line about
# something the world does not have (animals, foods, places, ...) should match no world concept.

# %% tags=["hide-input"]
line_checks = None
if backend == "embedding" and analysis.pool.in_world is not None:
    line_checks = llm.line_checks(labeler, analysis.pool, {t for ts_ in table["texts"] for t in ts_})
    held = (
        f"fitted without the {labeler.held_out_lines} lines of {model}'s heads; "
        if getattr(labeler, "held_out_lines", None)
        else ""
    )
    print(
        f"{labeler.calibration}: {held}on {line_checks['unpicked_lines']} in-world lines no head picked, it accepts the line's own concept for "
        f"{line_checks['unpicked_own_concept']:.3f} and rejects another for {line_checks['unpicked_other_concept']:.3f}; "
        f"it rejects every world concept for {line_checks['distractors_rejected']:.3f} of "
        f"{line_checks['distractor_lines']} lines about things outside the world"
    )

# %% tags=["remove-cell", "hide-input"]
summary = {
    "model": model,
    "weights": weights,
    "backend": backend,
    "pool": pool,
    "images": images,
    "labeler": llm.describe(labeler),
    "ground_truth_lenient": truth_lenient,
    "heldout_real": {
        b["calibration"]: {k: v for k, v in b.items() if k not in ("calibration", "set")} for b in bench if b["set"] == "heldout"
    },
    **({"judge_model": judge_model} if backend == "openai" else {}),
    "ccs_at_k": {str(k): v for k, v in at_k.items()},
    "category_counts": counts,
    "ground_truth": truth,
    "top_r2_agreement": agree,
    "premise": premise_table.reset_index().to_dict("records"),
    "line_checks": line_checks,
    "specialisation": dict(zip(table["name"], function["share"].round(4))),
    "heads": [
        {
            "layer": int(r.layer),
            "head": int(r.head),
            "name": r.name,
            "label": r.label,
            "ccs": None if r.flagged else int(r.ccs),
            "flagged": bool(r.flagged),
            "texts": r.texts,
            "judgements": [int(j) for j in r.judgements],
            "top_attribute": top[r.name],
        }
        for r in table.itertuples()
    ],
}


scored = int(table["ccs"].notna().sum())
summary["replication"] = {"this run": {"ccs-high-share": record.row(record.share(counts["high"], scored))}}
if "concepts" in table:
    truth_counts = scores.category_counts(headsets.truth_table(table))
    summary["truth_category_counts"] = truth_counts
    summary["replication"]["ground truth"] = {"ccs-high-share": record.row(record.share(truth_counts["high"], scored))}
with open("ccs.json", "w") as f:  # NaN (an undefined statistic) is written as null
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
