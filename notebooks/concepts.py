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
# # Concept-specific pruning: do a concept's heads carry its task?
#
# **The paper's claim, here a hypothesis.** If a head's label means something, pruning the heads
# labelled with one concept hurts the tasks of that concept and leaves the others alone: the paper
# prunes its *location* heads and Country-211 accuracy drops, while pruning its *animal* heads does
# not touch it.
#
# Here every concept that owns heads is pruned in turn and every task of the concept world is measured:
# a concept × task matrix of accuracy changes. Each row has a control, as many random heads from the
# other heads (over several draws), so that a row's cost is read against what pruning that many heads
# costs anyway. If the labels mean something, the **diagonal** (a concept's own task) dominates.
# The code is folded away except the call that prunes: `pruning.run`.

# %% tags=["hide-input"]
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from ccs import ablate, carriers, concept_pruning, intervals, models, plots, pruning, record, study, verdicts, world

plots.style()
pd.set_option("display.width", 200, "display.max_colwidth", 120)

# %% tags=["parameters", "hide-input"]
model = "ccs-tiny"  # [model] a registered model (`ccs models`)
weights = "trained"  # [trained | random] "trained", or "random": the same architecture untrained (tests the path, no download)
backend = "embedding"  # [embedding | openai] labeler and judge: "embedding" (offline) or "openai"
pool = "world"  # [pool] TextSpan's description pool
calibration = "pool"  # [pool | world | real | lenient] the offline judge's calibration: "pool" (the one for this pool), "world", "real" or "lenient"
images = 1000  # [at least 2] images TextSpan decomposes (the same analysis as the TextSpan and CCS pages)
texts = 5  # [at least 1]
seed = 0  # [at least 0]
labels = "run"  # [run | truth | paper] whose concept labels: "run" (this run's labeler), "truth" (the world's), "paper"
ablation = "zero"  # [zero | mean] "zero" (the paper's soft pruning) or "mean"
seeds = 5  # [at least 1] random control draws per concept
eval_images = 1000  # [at least 2] fresh concept-world test images for the zero-shot tasks
eval_seed = 1  # [at least 0]
measure = "p_true"  # [p_true | correct] "p_true" (probability of the true class) or "correct" (top-1)

# %% [markdown]
# ## Which heads belong to which concept

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
    seeds=seeds,
)
analysis, table, spec = st.analysis, st.table, st.spec
label_sources = st.concept_sets(labels, seeds)  # (labels, condition prefix, concept sets) per source of labels
concept_sets = label_sources[0][2]  # the page's own labels'
tasks = world.tasks()
pd.DataFrame(
    [
        {
            "concept": c,
            "heads": len(v["heads"]),
            "names": " ".join(v["heads"]),
            "measured by task": concept_pruning.task_for(c, tasks) or "(none)",
        }
        for c, v in concept_sets.items()
    ]
).set_index("concept")

# %% [markdown]
# ## Pruning each concept's heads, and as many random heads

# %% tags=["hide-input"]
model_, tokenizer = analysis.model, analysis.tokenizer
eval_sets = pruning.world_sets(eval_images, eval_seed, ["test"])
clfs = pruning.classifiers(model, model_, tokenizer, tasks)
means = ablate.head_means(model_, eval_sets["test"].images, layers=spec.analysed_layers) if ablation == "mean" else None
conditions = study.concept_conditions(label_sources)  # every source's concepts and their random controls
# beside the page's labels: the other text source's (the world's truth, or this run's), and the heads'
# function (each labelled by the world attribute that explains most of its output, no text)
other_labels, other_prefix, other_sets = next(((l, p, c) for l, p, c in label_sources[1:] if l != "function"), (None, "", {}))
fn_sets = next((c for l, _, c in label_sources if l == "function"), {})

# %%
r = pruning.run(model_, model, eval_sets, clfs, conditions, mode=ablation, means=means, progress=False)

# %% tags=["hide-input"]
concepts = list(concept_sets)
m = concept_pruning.concept_matrix(r, concepts, "test", measure)
print(
    f"{len(concepts)} concepts, {len(conditions)} conditions, {eval_images} test images; "
    f"{ablation} ablation; unpruned {pruning.MEASURES[measure]} per task:"
)
pd.Series({t: 100 * r.value("original", "test", measure, [t]) for t in r.tasks("test")}).round(1).to_frame("%").T

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The concept × task matrix: the change in the page's measure (by default the probability of the true class, percentage points) on every task of the test split when one concept's heads are pruned, against the unpruned model (left) and against as many random heads (right). Boxed: each concept's own task; if the labels mean something, the boxed cells hold the large drops.", "name": "fig-concepts-matrix"}, "image": {"alt": "Two heatmaps of accuracy change, rows the concept whose heads are pruned, columns the tasks, the diagonal cells outlined."}}
fig, axes = plt.subplots(1, 2, figsize=(13, 0.55 * len(concepts) + 2.2), sharey=True)
lim = float(np.nanmax(np.abs(m["change"].values))) or 1.0
for ax, key, title in ((axes[0], "change", "pruned − unpruned"), (axes[1], "excess", "pruned − random control")):
    sns.heatmap(
        m[key].astype(float),
        annot=True,
        fmt=".1f",
        cmap="RdBu",
        vmin=-lim,
        vmax=lim,
        ax=ax,
        cbar_kws={"label": "pp"},
        linewidths=0.5,
        linecolor="white",
        annot_kws={"fontsize": 8},
    )
    for i, c in enumerate(concepts):  # outline each concept's own task
        t = concept_pruning.task_for(c, tasks)
        if t in m[key].columns:
            ax.add_patch(plt.Rectangle((list(m[key].columns).index(t), i), 1, 1, fill=False, lw=2, ec="black"))
    ax.set(title=title, xlabel="task", ylabel="concept pruned" if key == "change" else "")
    ax.grid(False)
fig.suptitle(
    f"{model}: change in {pruning.MEASURES[measure]} when a concept's heads are pruned (boxed: the concept's own task)",
    fontsize=11,
)
plt.show()


def cell(pruned: str, task_of: str, key: str = "change") -> str:
    """One cell of the matrix in words, for the exercises' answer key."""
    t = concept_pruning.task_for(task_of, tasks)
    if pruned not in m[key].index or t not in m[key].columns:
        return f"n/a (no {pruned} heads in this run)"
    return f"{m[key].loc[pruned, t]:+.1f} pp"


glue("concepts-colour-on-colour", cell("colour", "colour"), display=False)
glue("concepts-colour-on-shape", cell("colour", "shape"), display=False)
glue("concepts-colour-excess", cell("colour", "colour", "excess"), display=False)

# %% tags=["hide-input"]
print(f"change in {pruning.MEASURES[measure]} (pp) per concept pruned and task:")
m["change"].round(1)

# %% tags=["hide-input"]
print(
    "the same for the control: the mean over its draws of as many random heads from the other heads "
    "(draws per concept, fewer where fewer different ones exist: "
    + ", ".join(f"{c} {len(v['random'])}" for c, v in concept_sets.items())
    + "):"
)
m["control"].round(1)

# %% [markdown]
# ## Verdict: does the diagonal dominate?
#
# For each image, the excess cost of pruning a concept's heads (the random control's score minus the
# pruned score) is averaged over the diagonal cells and over the off-diagonal cells; the difference
# of the two, over the images, with its bootstrap interval. **Supported** when the interval lies above
# zero, **contradicted** when it lies wholly below zero, **inconclusive** otherwise.

# %% tags=["hide-input"]
diag = concept_pruning.diagonal_test(r, concepts, "test", measure)
if diag["concepts"]:
    verdict = verdicts.verdict([diag["difference"]])
    print(f"concepts with a task of their own: {', '.join(diag['concepts'])}")
    print(
        f"excess cost on the concept's own task: {100 * diag['diagonal']:.1f} pp; "
        f"on the other tasks: {100 * diag['off_diagonal']:.1f} pp; "
        f"difference {verdicts.interval_text(diag['difference'])}"
    )
else:
    verdict = verdicts.NO_VERDICT
    print("no labelled concept has a task of its own here: no verdict")
loco = carriers.leave_one_concept_out(r, concepts, "test", measure)
carry = carriers.carried(verdict, loco, pd.DataFrame(columns=["verdict"]))
carry["text"] = carry["text"].replace("any one task", "any one concept")
glue("concepts-verdict", verdict, display=False)
glue("concepts-carried", carry["text"], display=False)
glue(
    "concepts-diagonal",
    (
        f"{100 * diag['diagonal']:.1f} pp on the concept's own task against {100 * diag['off_diagonal']:.1f} pp on the others"
    ).replace("-", "\u2212")
    if diag["concepts"]
    else "no labelled concept has a task of its own",
    display=False,
)
print(f"Verdict on {model} ({labels} labels, {ablation} ablation): the diagonal dominates -> {verdict.upper()}")
print(f"what carries it: {carry['text']}")
loco

# %% [markdown]
# Each concept's own cell: how much more its heads cost its task than as many random heads do
# (percentage points, with an interval over the images and the control draws). A concept whose
# task pruning every analysed head leaves untouched cannot show anything here.

# %% tags=["hide-input"]
own = []
for c in diag["concepts"]:
    t = concept_pruning.task_for(c, tasks)
    d = intervals.two_level_ci(r.per_draw(f"{c}-random", "test", measure, [t]), r.per_draw(c, "test", measure, [t]))
    own.append(
        {
            "concept": c,
            "task": t,
            "heads": len(concept_sets[c]["heads"]),
            "excess on own task": verdicts.interval_text(d),
            "verdict": verdicts.verdict([d]),
        }
    )
own = pd.DataFrame(own, columns=["concept", "task", "heads", "excess on own task", "verdict"]).set_index("concept")
own

# %% [markdown]
# ### The same test with the other source of labels

# %% tags=["hide-input"]
if other_labels:
    other_diag = concept_pruning.diagonal_test(r, list(other_sets), "test", measure, prefix=other_prefix)
    other_verdict = verdicts.verdict([other_diag["difference"]]) if other_diag["concepts"] else verdicts.NO_VERDICT
    other_carry = carriers.carried(
        other_verdict,
        carriers.leave_one_concept_out(r, list(other_sets), "test", measure, other_prefix),
        pd.DataFrame(columns=["verdict"]),
    )
    other_carry["text"] = other_carry["text"].replace("any one task", "any one concept")
    print(
        f"{other_labels} labels: concepts {', '.join(other_diag['concepts'])}; diagonal - off-diagonal "
        f"{verdicts.interval_text(other_diag['difference'])} -> {other_carry['text']}"
    )
    glue("concepts-other-verdict", other_carry["text"], display=False)
else:
    other_diag, other_carry = None, None
    glue("concepts-other-verdict", "n/a (the pool carries no ground truth)", display=False)
    print("no second source of labels for this pool")

# %% [markdown]
# ### The same test with the heads' function
#
# Each head labelled, without any text, by the world attribute whose values explain most of its
# output (the CCS page's R²): does pruning the heads that *compute* a concept hit that concept's task?

# %% tags=["hide-input"]
fn_diag, fn_verdict = None, None
if fn_sets:
    fn_diag = concept_pruning.diagonal_test(r, list(fn_sets), "test", measure, prefix="function: ")
    fn_verdict = verdicts.verdict([fn_diag["difference"]]) if fn_diag["concepts"] else verdicts.NO_VERDICT
    print(
        f"function labels: concepts {', '.join(fn_diag['concepts'])}; diagonal - off-diagonal "
        f"{verdicts.interval_text(fn_diag['difference'])} -> {fn_verdict}"
    )
    display(
        pd.DataFrame(
            [{"concept": c, "heads": len(v["heads"]), "names": " ".join(v["heads"])} for c, v in fn_sets.items()]
        ).set_index("concept")
    )
glue("concepts-function-verdict", fn_verdict or "n/a (the images carry no ground truth)", display=False)

# %% [markdown]
# ### The paper's two concept tables, one comparison each
#
# The paper prunes the *location* heads and, as a control, the *animal* heads, and reads Country-211;
# it prunes the *object* heads against the *location* heads and reads the objects of CIFAR-10. The
# concept world's nearest pair is scene (where the image is) and shape (what is in it): on the scene
# task, scene heads against shape heads, and on the shape task, shape heads against scene heads. Each
# cost is taken over as many random heads (the two sets differ in size), so the number is the extra
# cost of the task's own heads over the other concept's, with an interval over the images and the
# controls' draws; the claim predicts it above zero, and a label source without heads of either
# concept cannot run it.

# %% tags=["hide-input"]
cross = {}  # label source -> {claim: (estimate, low, high)}; only the comparisons this model can run
for source, prefix, _ in label_sources:
    for key, own_, other_ in (("concept-scene-vs-shape", "scene", "shape"), ("concept-shape-vs-scene", "shape", "scene")):
        d = concept_pruning.cross_test(r, own_, other_, "test", measure, prefix=prefix)
        if np.isfinite(d[0]):
            cross.setdefault(source, {})[key] = d
for key in ("concept-scene-vs-shape", "concept-shape-vs-scene"):  # the chapter's sentences, this run's labels
    d = cross.get(labels, {}).get(key)
    glue(
        key.replace("concept-", "concepts-"),
        f"{verdicts.verdict([d])} ({verdicts.interval_text(d)})"
        if d is not None
        else "n/a (no heads of one of the two concepts)",
        display=False,
    )
pd.DataFrame(
    [
        {
            "labels": source,
            "comparison": key.removeprefix("concept-").replace("-", " "),
            "extra cost on the own task": verdicts.interval_text(d),
            "verdict": verdicts.verdict([d]),
        }
        for source, ds in cross.items()
        for key, d in ds.items()
    ]
    or [{"labels": "none", "comparison": "no label source has both scene and shape heads"}]
)

# %% [markdown]
# ## The paper's numbers
#
# Country-211 top-1 (%) unpruned, with the *location* heads pruned and with the *animal* heads pruned;
# and the objects subset of CIFAR-10 (airplane, automobile, ship, truck) with the *object*, *location*
# or *animal* heads pruned. A run of a paper model with `labels="paper"` prunes the same published
# head lists on those datasets when they are on disk (`ccs data` says where) and puts its numbers in
# the same tables, blank where it has none.

# %% tags=["hide-input"]
paper = models.paper()
real = pruning.real_sets(model, ["Country-211", "CIFAR-10"], eval_images, eval_seed)
for name, why in real.missing.items():
    print(f"{name}: not measured ({why})")
if "CIFAR-10" in real.sets:  # the paper's objects subset: images of these four classes, 10-way classifier
    keep = [real.tasks["CIFAR-10"].classnames.index(c) for c in ("airplane", "automobile", "ship", "truck")]
    y = real.sets["CIFAR-10"].labels["CIFAR-10"]
    real.sets["CIFAR-10"].labels["CIFAR-10"] = np.where(np.isin(y, keep), y, -1)
concept_of = {"locations": "location", "objects": "object", "animals": "animal"}  # the paper's groups
present = {g: c for g, c in concept_of.items() if c in conditions}
if real.sets:
    clfs.update(pruning.classifiers(model, model_, tokenizer, real.tasks))
    pruning.run(
        model_,
        model,
        real.sets,
        clfs,
        {k: conditions[k] for k in ["original", *present.values()]},
        mode=ablation,
        means=means,
        progress=False,
        results=r,
    )


def run_value(dataset: str, condition: str) -> float:
    measured = dataset in real.sets and condition in r.conditions()
    return 100 * r.value(condition, dataset, "correct") if measured else float("nan")


paper_rows = {}  # this run's rows of the paper's tables, for the paper-vs-book page (ccs.paper_tables)
for dataset, key, columns in (
    ("Country-211", "concept_location_country211", ["original", "locations", "animals"]),
    ("CIFAR-10", "concept_objects_cifar10", ["original", "objects", "locations", "animals"]),
):
    if dataset in real.sets:
        row = [run_value(dataset, "original" if c == "original" else concept_of[c]) for c in columns]
        paper_rows[key] = {"Country-211" if dataset == "Country-211" else "CIFAR-10 objects": row}
    table_ = pd.DataFrame(paper[key], index=[f"paper: {c}" + ("" if c == "original" else " pruned") for c in columns]).T
    if not spec.embedded:
        for c in columns:
            table_[f"this run: {c}" + ("" if c == "original" else " pruned")] = [
                run_value(dataset, "original" if c == "original" else concept_of[c]) if m_ == model else float("nan")
                for m_ in table_.index
            ]
    print(f"{dataset}{' (objects subset)' if dataset == 'CIFAR-10' else ''}, top-1 %")
    display(table_)

# %% tags=["remove-cell", "hide-input"]
summary = {
    "model": model,
    "weights": weights,
    "labels": labels,
    "ablation": ablation,
    "measure": measure,
    "eval_images": eval_images,
    "concepts": {c: {"heads": v["heads"], "task": concept_pruning.task_for(c, tasks)} for c, v in concept_sets.items()},
    "change": m["change"].round(3).to_dict("index"),
    "control": m["control"].round(3).to_dict("index"),
    "excess": m["excess"].round(3).to_dict("index"),
    "diagonal": {
        "concepts": diag["concepts"],
        "diagonal": diag["diagonal"],
        "off_diagonal": diag["off_diagonal"],
        "difference": dict(zip(("estimate", "low", "high"), diag["difference"])),
    },
    "verdict": verdict,
    "carried": carry,
    "own_task": own.reset_index().to_dict("records"),
    "other_labels": other_labels,
    "other_verdict": other_carry,
    "other_diagonal": None
    if other_diag is None
    else {"concepts": other_diag["concepts"], "difference": dict(zip(("estimate", "low", "high"), other_diag["difference"]))},
    "seeds": seeds,
    "paper_tables": paper_rows,
    "replication": {
        **(
            {{"run": "this run", "truth": "ground truth"}[labels]: {"concept-diagonal": record.row(diag["difference"], verdict)}}
            if labels in ("run", "truth") and diag["concepts"]
            else {}
        ),
        **(
            {
                {"run": "this run", "truth": "ground truth"}[other_labels]: {
                    "concept-diagonal": record.row(other_diag["difference"], other_verdict)
                }
            }
            if other_labels and other_diag["concepts"]
            else {}
        ),
        **(
            {"function": {"concept-diagonal": record.row(fn_diag["difference"], fn_verdict)}}
            if fn_diag is not None and fn_diag["concepts"]
            else {}
        ),
    },
    "concept_tables": {
        source: {k: dict(zip(("estimate", "low", "high"), d)) for k, d in ds.items()} for source, ds in cross.items()
    },
    "function_verdict": fn_verdict,
}
for source, ds in cross.items():  # the paper's concept tables, on the replication page beside the diagonal
    # (no "test" entry: the function source here labels heads by what they compute, not most vs least specialised)
    where = {"run": "this run", "truth": "ground truth", "function": "function"}.get(source)
    if where:
        summary["replication"].setdefault(where, {}).update({k: record.row(d) for k, d in ds.items()})
with open("concepts.json", "w") as f:
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
