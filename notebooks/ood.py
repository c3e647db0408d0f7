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
# # Shifted data and out-of-distribution detection under pruning
#
# **The paper's claim, here a hypothesis.** The paper calls zero-shot accuracy on *shifted* datasets
# (ImageNet-A and -R, Country-211, Oxford-IIIT Pets) "out-of-domain" performance, and finds that
# pruning the high-CCS heads costs more there than pruning low-CCS heads. We test that, and the
# sharper question its data invites: **does pruning the high-CCS heads hurt shifted data *more* than
# the data the model knows?**
#
# The concept world has shifted splits whose images pair one to one with the test images (the same
# objects, drawn differently): *sketch* (outlines only), *noisy* (blur and pixel noise) and
# *novel-shades* (colour shades never seen in training). So the two drops are compared image by
# image: for each image, the drop on its shifted twin minus the drop on the original.
#
# A second question, which the paper does not ask: can the model still tell images it knows from images it
# does not (held-out shapes, pure noise) after pruning? Scored by maximum concept matching (MCM, Ming
# et al. 2022): the largest softmax probability over the in-distribution class prompts, the cosine
# similarities divided by a temperature T = 1 before the softmax. T = 1 is MCM's own choice (its
# paper's setting and its code's default), not CLIP's logit scale of 100 (T = 0.01) that zero-shot
# classification uses; T changes which images score high relative to others, so AUROC depends on it.
#
# The code is folded away except the call that prunes: `pruning.run`.

# %% tags=["hide-input"]
import json

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from myst_nb import glue

from ccs import ablate, headsets, models, ood, plots, pruning, record, study, verdicts, world

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
sets = (
    "run"  # [run | truth | function | paper] where the high and low heads come from: "run", "truth" (world ground truth), "paper"
)
ablation = "zero"  # [zero | mean] "zero" (the paper's soft pruning) or "mean"
seeds = 5  # [at least 1] random draws
eval_images = 1000  # [at least 2] fresh concept-world images per split
eval_seed = 1  # [at least 0]
measure = "p_true"  # [p_true | correct] "p_true" (probability of the true class) or "correct" (top-1)
detect_task = "shape"  # [concept] the class prompts whose MCM score detects OOD images (novel shapes have no class)

# %% [markdown]
# ## The sets pruned
#
# The same sets as the pruning page (see there for how they are chosen).

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
analysis, table, spec, every = st.analysis, st.table, st.spec, st.every
hs, other, fn = st.sets, st.other, st.fn  # the page's sets; the other text source's and the function's beside them
print(st.describe())
plots.notes(hs.notes)
print("Heads in the paper's categories, this model beside the paper's (a share of the analysed heads):")
st.beside_paper().round(1)

# %% tags=["hide-input"]
model_, tokenizer = analysis.model, analysis.tokenizer
shifted = ["sketch", "noisy", "novel-shades"]
eval_sets = pruning.world_sets(eval_images, eval_seed, ["test", *shifted, "novel-shapes"])
eval_sets["noise"] = pruning.noise_set(eval_images, eval_seed, eval_sets["test"])
clfs = pruning.classifiers(model, model_, tokenizer, world.tasks())
means = ablate.head_means(model_, eval_sets["test"].images, layers=spec.analysed_layers) if ablation == "mean" else None
conditions = st.conditions(equal=False)  # every source's sets; the page's own unprefixed
groups = ["high", "low", "random"]
pre = f"{other.source}: " if other is not None else ""
only = {k: ["test", *shifted, "novel-shapes"] for k in conditions if ": " in k}  # the other sources: not on noise

# %%
r = pruning.run(model_, model, eval_sets, clfs, conditions, mode=ablation, means=means, only=only, progress=False)
print(f"{len(conditions)} conditions x {len(eval_sets)} sets of {eval_images} images")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Six images of each set, one set a row: the test images, their sketch, noisy and novel-shades twins (the same objects drawn differently), and the two out-of-distribution sets, held-out shapes and pure noise.", "name": "fig-ood-examples"}, "image": {"alt": "Grid of six rows of six small generated images: test, sketch, noisy, novel-shades, novel-shapes and noise."}}
examples = torch.cat([eval_sets[s].images[:6] for s in ["test", *shifted, "novel-shapes", "noise"]])
plt.figure(figsize=(6, 6.5))
plt.imshow(world.grid(examples, nrow=6, scale=2))
plt.axis("off")
plt.title("rows: test, sketch, noisy, novel-shades, novel-shapes, noise")
plt.show()

# %% [markdown]
# ## Drops in distribution and on shifted data
#
# For each shifted split and pruned set: the drop of the score on the test images, the drop on their
# shifted twins, and the difference (shifted minus test) with its paired 95 % interval over the images.
# A positive difference means pruning hurts the shifted data more.

# %% tags=["hide-input"]
rows = []
for split in shifted:
    tasks = r.tasks(split)  # texture is not scored on sketches
    for name in groups:
        d_in, d_sh = r.drop(name, "test", measure, tasks), r.drop(name, split, measure, tasks)
        x = ood.extra_drop(r, name, split, measure)
        rows.append(
            {
                "split": split,
                "pruned": name,
                "score test %": 100 * r.value(name, "test", measure, tasks),
                "score shifted %": 100 * r.value(name, split, measure, tasks),
                "drop test": verdicts.interval_text(d_in, unit=""),
                "drop shifted": verdicts.interval_text(d_sh, unit=""),
                "shifted - test": verdicts.interval_text(x, unit=""),
                "x": x,
            }
        )
drops = pd.DataFrame(rows)
print(
    f"{pruning.MEASURES[measure]}, all tasks that apply, in percentage points [95 % interval]; unpruned:",
    "; ".join(
        f"{s} {100 * r.value('original', s, measure, r.tasks(s)):.1f} % (test {100 * r.value('original', 'test', measure, r.tasks(s)):.1f} %)"
        for s in shifted
    ),
)
drops.drop(columns="x").set_index(["split", "pruned"])

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Does pruning hurt shifted data more? For each shifted split and pruned set, the drop on the shifted twins minus the drop on the test images (percentage points, paired 95 % intervals over the images); above zero, the shifted data lose more.", "name": "fig-ood-extra-drop"}, "image": {"alt": "Bar chart of the shifted-minus-test drop for the high, low and random sets on the sketch, noisy and novel-shades splits, with error bars."}}
fig, ax = plt.subplots(figsize=(8, 3.8))
plot = pd.DataFrame(
    [
        {"split": row.split, "pruned": row.pruned, "extra": 100 * row.x[0], "lo": 100 * row.x[1], "hi": 100 * row.x[2]}
        for row in drops.itertuples()
    ]
)
sns.barplot(plot, x="split", y="extra", hue="pruned", ax=ax, errorbar=None)
for bars_, (_, sub) in zip(ax.containers, plot.groupby("pruned", sort=False)):
    xs = [b.get_x() + b.get_width() / 2 for b in bars_]
    ax.errorbar(
        xs, sub["extra"], yerr=[sub["extra"] - sub["lo"], sub["hi"] - sub["extra"]], fmt="none", ecolor="0.2", capsize=3, lw=1
    )
ax.axhline(0, color="0.3", lw=0.8)
ax.set(
    ylabel="drop on shifted − drop on test (pp)",
    xlabel="",
    title=f"{model}: does pruning hurt shifted data more? ({hs.source} sets, 95 % intervals)",
)
plt.show()

# %% [markdown]
# ## Out-of-distribution detection
#
# In-distribution: the test images. Out of distribution: held-out shapes (ring, crescent, arrow,
# otherwise like the test images) and pure noise. The score is the MCM of the shape prompts; higher
# means "looks like something I know". AUROC (1 = perfect separation, 0.5 = chance) and the
# false-positive rate at 95 % true-positive rate (FPR95, lower is better), with bootstrap intervals.

# %% tags=["hide-input"]
det = pd.DataFrame(
    [
        {"OOD set": out, "pruned": name, **ood.detection(r, name, out, detect_task)}
        for out in ("novel-shapes", "noise")
        for name in ["original", *groups]
    ]
)
det["AUROC [95 % CI]"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in zip(det.auroc, det.auroc_lo, det.auroc_hi)]
det["FPR95"] = det["fpr95"].round(3)
glue(
    "ood-auroc-novel",
    det[(det["OOD set"] == "novel-shapes") & (det.pruned == "original")]["AUROC [95 % CI]"].iloc[0],
    display=False,
)
print(f"MCM of the {detect_task} prompts; random: the draws' scores pooled")
det[["OOD set", "pruned", "AUROC [95 % CI]", "FPR95"]].set_index(["OOD set", "pruned"])

# %% tags=["hide-input"] mystnb={"figure": {"caption": "MCM scores of the shape prompts for the test images, the held-out shapes and pure noise, unpruned (left) and with the high set pruned (right); the further apart the in-distribution and out-of-distribution histograms, the easier the detection.", "name": "fig-ood-mcm"}, "image": {"alt": "Two panels of overlaid histograms of MCM scores for test, novel-shapes and noise images, unpruned and with the high set pruned."}}
dist = pd.concat(
    [
        pd.DataFrame(
            {"MCM score": r.scores[c, s, detect_task][pruning.DETECTION], "images": s, "pruned": pruning.group(c)}
        )  # the high set's first draw when tied heads are drawn
        for c in ("original", r.members("high")[0])
        for s in ("test", "novel-shapes", "noise")
    ]
)
g = sns.displot(
    dist,
    x="MCM score",
    hue="images",
    col="pruned",
    kind="hist",
    stat="density",
    common_norm=False,
    element="step",
    bins=40,
    height=3.2,
    aspect=1.5,
)
g.figure.suptitle(f"{model}: MCM scores of the {detect_task} prompts, unpruned and with the high set pruned", y=1.04)
plt.show()

# %% [markdown]
# ## Verdicts
#
# Two claims, each **supported** when all its intervals lie above zero, **contradicted** when one lies
# wholly below zero, **inconclusive** otherwise:
#
# 1. **The paper's**: on every shifted split, pruning the high set costs more than pruning the low set
#    and more than pruning random sets (six paired differences over the images).
# 2. **The sharper question**: pruning the high set hurts the shifted twin of an image more than the
#    image itself (three differences, shifted drop minus test drop). The same rule applied to the low
#    and random sets says whether that is special to the high heads.

# %% tags=["hide-input"]
paper_claims = {
    f"{split}: high vs {other}": r.compare(other, "high", split, measure) for split in shifted for other in ("low", "random")
}
paper_verdict = verdicts.verdict(paper_claims.values())
for k, v in paper_claims.items():
    print(f"{k}: extra drop of high {verdicts.interval_text(v)}")
split_verdicts = {
    name: verdicts.verdict([drops[(drops.pruned == name) & (drops.split == s)]["x"].iloc[0] for s in shifted]) for name in groups
}
verdict = split_verdicts["high"]
for name, v in split_verdicts.items():
    print(f"pruning the {name} set hurts shifted data more than test data: {v}")
glue("ood-verdict", verdict, display=False)  # shifted data hurt more than test data by the high set


novel = det[(det["OOD set"] == "novel-shapes") & (det.pruned == "original")].iloc[0]
detector_at_chance = ood.detector_at_chance(r, detect_task)
if detector_at_chance:
    print(
        f"the unpruned detector is at chance on novel shapes (AUROC {novel['AUROC [95 % CI]']}): "
        "pruning cannot show anything about detection here; no verdict on it"
    )
replication_rows = {}
for prefix, s_ in st.sources():
    source = s_.source
    sv, sl = ood.high_vs(r, shifted, "random", measure, prefix), ood.high_vs(r, shifted, "low", measure, prefix)
    ad = ood.auroc_drop(r, detect_task, prefix=prefix)
    replication_rows[source] = {
        "shifted-high-vs-random": record.row(sv, test=s_.test),
        "shifted-high-vs-low": record.row(sl, test=s_.test),
        "ood-auroc-drop": record.row(ad, "no verdict (detector at chance)" if detector_at_chance else None, test=s_.test),
    }
    print(
        f"{headsets.whose(source)} sets: high vs random on the shifted splits {verdicts.interval_text(sv)} -> "
        f"{replication_rows[source]['shifted-high-vs-random']['verdict']}; novel-shapes AUROC unpruned minus "
        f"high pruned {verdicts.interval_text(ad, 1, '')} -> {replication_rows[source]['ood-auroc-drop']['verdict']}"
    )
other_claims = (
    {
        f"{split}: high vs {base}": r.compare(pre + base, pre + "high", split, measure)
        for split in shifted
        for base in ("low", "random")
    }
    if other is not None
    else {}
)
other_verdict = verdicts.verdict(other_claims.values()) if other_claims else None
if other_verdict:
    print(f"the paper's claim with the {other.source} sets: {other_verdict}")
glue("ood-other-verdict", other_verdict or "n/a (the pool carries no ground truth)", display=False)
glue(
    "ood-paper-verdict", headsets.verdict_text(hs, paper_verdict), display=False
)  # high costs more than low and random on shifted data
print(
    f"Verdicts on {model} ({headsets.whose(hs.source)} sets, {ablation} ablation, {pruning.MEASURES[measure]}): "
    + (
        f"the paper's claim is {paper_verdict.upper()}"
        if hs.paper_test
        else f"no verdict on the paper's claim ({hs.why_not_paper()}); on the ranked sets: {paper_verdict.upper()}"
    )
    + f"; shifted data hurt more than test data: {verdict.upper()}."
)

# %% [markdown]
# ## The paper's numbers
#
# Zero-shot top-1 (%) on the shifted datasets as published: unpruned, high pruned, low pruned. A run of
# a paper model measures the same conditions on those datasets when they are on disk (`ccs data`
# says where) and puts its numbers in the same table, blank where it has none, with CLIP's prompts and
# class names (clip-benchmark's lists, as the paper's code). Pets is measured as the paper's code
# listed it (`Oxford-Pets-paper`: all 7,390 images, labelled by the first word of the file name, 35
# classes named by those words, CIFAR's 18 prompts), a likely reason why the paper's Pets numbers sit
# far below CLIP's published Pets accuracy; `Oxford-Pets` (torchvision's 37-class test split) is the
# standard benchmark.

# %% tags=["hide-input"]
paper = models.paper()
real = pruning.real_sets(model, ["Country-211", "Oxford-Pets-paper", "ImageNet-A", "ImageNet-R"], eval_images, eval_seed)
PETS = {"Oxford-Pets": "Oxford-Pets-paper"}  # the paper's Pets row is its own listing of the images
paper_ood = {m: {PETS.get(ds, ds): v for ds, v in per.items()} for m, per in paper["ood_datasets"].items()}
for name, why in real.missing.items():
    print(f"{name}: not measured ({why})")
if real.sets:  # the paper's shifted datasets on disk: original, high and low pruned
    clfs.update(pruning.classifiers(model, model_, tokenizer, real.tasks))
    pruning.run(
        model_,
        model,
        real.sets,
        clfs,
        {k: v for k, v in conditions.items() if pruning.group(k) in ("original", "high", "low")},
        mode=ablation,
        means=means,
        progress=False,
        results=r,
    )
pruning.beside_paper(paper_ood, model, r, real.sets, embedded=spec.embedded)

# %% tags=["remove-cell", "hide-input"]
summary = {
    "model": model,
    "weights": weights,
    "sets": hs.source,
    "rule": hs.rule,
    "paper_test": hs.paper_test,
    "ablation": ablation,
    "measure": measure,
    "eval_images": eval_images,
    "eval_seed": eval_seed,
    "notes": hs.notes,
    "drops": [
        {k: v for k, v in row.items() if k != "x"} | {"extra": dict(zip(("estimate", "low", "high"), row["x"]))}
        for row in drops.to_dict("records")
    ],
    "detection": det.drop(columns=["AUROC [95 % CI]"]).to_dict("records"),
    "paper_claims": {k: dict(zip(("difference", "low", "high"), v)) for k, v in paper_claims.items()},
    "paper_verdict": paper_verdict,
    "verdicts": split_verdicts,
    "verdict": verdict,
    "other_sets": other.source if other is not None else None,
    "other_paper_verdict": other_verdict,
    "other_paper_claims": {k: dict(zip(("difference", "low", "high"), v)) for k, v in other_claims.items()},
    "detector_at_chance": bool(detector_at_chance),
    "replication": replication_rows,
    "seeds": seeds,
    # for ccs.paper_tables, under paper.yaml's dataset names (its Oxford-Pets row is the paper's listing)
    "paper_tables": {
        "ood_datasets": {{v: k for k, v in PETS.items()}.get(ds, ds): x for ds, x in pruning.run_values(r, real.sets).items()}
    },
}
with open("ood.json", "w") as f:
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
