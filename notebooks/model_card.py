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
# # Model card
#
# What the model under study is: its architecture and where its parameters are, and, for the
# book's own concept-world models (`ccs-tiny` and the others of its zoo, trained by the same recipe
# from other seeds or with another head shape), the world it was trained on, how the training went,
# what it recognises and what it does not.
#
# **In short**: what the later pages can find in this model is bounded by what it recognises. The
# zero-shot accuracy per concept ({numref}`fig-model-card-accuracy`) says which concepts it has
# learned, and the targets table at the end which it has not. The code behind the tables and figures
# is folded away; the one call the page is about, `evaluate.world_report` (zero-shot accuracy,
# retrieval and OOD detection on fresh images of every split), is shown.

# %% tags=["hide-input"]
import json
import re
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from ccs import evaluate, models, plots, world

plots.style()
pd.set_option("display.width", 200, "display.max_colwidth", None)

# %% tags=["parameters", "hide-input"]
model = "ccs-tiny"  # [model] a registered model (`ccs models`)
weights = "trained"  # [trained | random] "trained", or "random": the same architecture untrained (tests the path, no download)
test_images = 1000  # [at least 2] fresh concept-world images per split for the zero-shot and retrieval figures
seed = 1  # [at least 0] seed of those images (never used in training)
target_images = 1000  # [at least 2] fresh test images of the targets table (the seed the previous model was measured on)

# %% [markdown]
# ## Architecture

# %% tags=["hide-input"]
spec = models.spec(model)
print(models.banner(model, weights))
torch.manual_seed(seed)  # random weights: the same ones on every run
clip, preprocess, tokenizer = models.load(model, untrained=weights == "random")
pd.Series(models.architecture(model, clip), name="value").to_frame()

# %% [markdown]
# ## Where the parameters are
#
# The token embedding of the text tower (one row per BPE token of CLIP's 49,408-token vocabulary)
# is the largest single block; the heads this book studies live in the vision transformer.

# %% tags=["hide-input"]
parts = models.parameter_counts(clip)
params = pd.DataFrame({"part": list(parts), "parameters": list(parts.values())})
params["share %"] = (100 * params["parameters"] / params["parameters"].sum()).round(1)
print(f"total parameters: {params['parameters'].sum():,}")
params.set_index("part")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Where the parameters are: the number of parameters in each part of the model.", "name": "fig-model-card-parameters"}, "image": {"alt": "Horizontal bar chart of parameter counts per model part; the text tower's token embedding is the longest bar."}}
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.barplot(data=params, y="part", x="parameters", ax=ax, color=sns.color_palette()[0])
ax.set(xlabel="parameters", ylabel="", title=f"{model}: parameters by part")
plt.show()

# %% [markdown]
# ## The concept world
#
# The concept-world models never saw a photograph. They are trained on generated images of one to three objects
# whose every attribute is known: **shape**, **colour**, **size**, **texture**, **position** in a
# 3×3 grid of the frame, the background **scene** (this world's stand-in for the paper's
# "location" heads) and the **count**. Captions name a random subset of the attributes with varied
# phrasings, so each concept is also learnable alone. Below, test images with the caption that
# names all their attributes, then the shifted renderings used for the out-of-domain experiments.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Sixteen test images of the concept world (the training distribution, drawn with a seed never used in training); the captions of the first eight follow.", "name": "fig-model-card-samples"}, "image": {"alt": "Two rows of eight small generated images of one to three coloured, textured shapes on varied backgrounds."}}
samples = world.sample(16, seed=seed, split="test")
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.imshow(world.grid(samples.images, nrow=8))
ax.set_axis_off()
ax.set_title("test images (training distribution, fresh seed)")
plt.show()

# %% tags=["hide-input"]
pd.DataFrame(
    {"caption that names every attribute": [world.full_caption(row) for _, row in samples.attributes.head(8).iterrows()]}
)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The shifted renderings, one split a row: the same kind of scenes drawn differently, used for the out-of-domain experiments.", "name": "fig-model-card-shifted"}, "image": {"alt": "Rows of eight small images, one row per shifted split (sketch, noisy, novel shades, novel shapes), each titled with the split's description."}}
shifted = [s for s in world.SPLITS if s not in ("train", "test")]
fig, axes = plt.subplots(len(shifted), 1, figsize=(9, 1.35 * len(shifted)))
for ax, split in zip(axes, shifted):
    ax.imshow(world.grid(world.sample(8, seed=seed, split=split).images, nrow=8))
    ax.set_axis_off()
    ax.set_title(f"{split}: {world.SPLITS[split]}", fontsize=9, loc="left")
plt.show()

# %% [markdown]
# ## Training
#
# open_clip's own model and contrastive loss (`ClipLoss`), AdamW with warm-up and a cosine
# schedule, on batches in which groups of up to 8 images differ in one attribute only ("siblings",
# each with another value of it), so that the loss rewards telling apart exactly the concepts that
# pixels make least salient. The training record ships with the weights;
# `make train-tiny MODEL=<name>` repeats the run.

# %% tags=["hide-input"]
record = json.loads((models.WEIGHTS_DIR / f"{model}.record.json").read_text()) if spec.embedded else None
if record:
    display(
        pd.Series(
            {
                "in the zoo": models.zoo()[model]["about"],
                "training seed": record["train_config"]["seed"],
                "image-caption pairs seen": f"{record['pairs_seen_total']:,}",
                "optimiser steps": record["steps_run"],
                "weights from step": record["weights_from_step"],
                "batch size": record["train_config"]["batch_size"],
                "wall time": f"{record['wall_time_s'] / 60:.0f} min",
                "hardware": f"{record['hardware']}, {record['threads']} torch thread(s)",
            },
            name="value",
        ).to_frame()
    )

    restart = [line for line in record["notes"].splitlines() if line.startswith("Restarted at step")]
    if restart:  # the one thing of the run's history a reader needs: it was not one uninterrupted run
        display(Markdown("> **Not one uninterrupted run.** " + restart[0]))
    # the command, wrapped into continued lines (one line of it is wider than the page); the run
    # folder is the command's default, so it is left out
    command, _, _ = record["retrain"].partition("  # ")
    command = re.sub(r" --out \S+", "", command)
    lines = textwrap.wrap(command, 66, break_long_words=False, break_on_hyphens=False)
    display(
        Markdown(
            "The command that repeats it (it resumes where it stopped if interrupted):\n\n```bash\n"
            + " \\\n    ".join(lines)
            + f"\nccs train-tiny --model {model} --export\n```"
        )
    )
else:
    print(f"{model} was trained by its authors; see open_clip's model card for {spec.open_clip}.")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Training: the contrastive loss per step (thin) and its running mean (thick), left; zero-shot accuracy per concept on held-out images during training, right, with the step whose weights ship dashed.", "name": "fig-model-card-training"}, "image": {"alt": "Two line charts: the training loss falling over the steps, and per-concept zero-shot accuracy rising over the steps, with a dashed vertical line at the shipped step."}}
if record:
    loss = pd.DataFrame(record["loss_curve"])
    evals = pd.DataFrame([{"step": e["step"], **e["zero_shot"]} for e in record["evals"]])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    ax1.plot(loss["step"], loss["loss"], lw=0.8, alpha=0.4)
    ax1.plot(loss["step"], loss["loss"].rolling(20, min_periods=1).mean(), lw=2)
    ax1.set(xlabel="step", ylabel="contrastive loss", title="training loss")
    sns.lineplot(
        data=evals.melt("step", var_name="concept", value_name="accuracy"), x="step", y="accuracy", hue="concept", ax=ax2
    )
    ax2.axvline(record["weights_from_step"], color="0.4", ls="--", lw=1)
    ax2.set(ylim=(0, 1.02), title="zero-shot accuracy during training (shipped step dashed)")
    ax2.legend(fontsize=8, ncol=2)
    plt.show()

# %% [markdown]
# ## What it recognises
#
# Zero-shot top-1 accuracy per concept, on freshly generated images of every split: the prompt
# ensemble of each class ("a photo of a red object", ...) is the classifier, as in the paper.
# Chance is one over the number of classes. Shape accuracy is undefined on `novel-shapes`, whose
# shapes have no class; there the question is whether the model *notices* them (OOD AUROC below).

# %%
report = evaluate.world_report(clip, tokenizer, seed=seed, n=test_images, splits=list(world.SPLITS)[1:])

# %% tags=["hide-input"]
tasks = world.tasks()
acc = pd.DataFrame({split: r["zero_shot"] for split, r in report.items()})
acc.insert(0, "chance", [1 / len(tasks[c].classnames) for c in acc.index])
acc.index.name = "concept"
glue("tiny-accuracy", acc.round(3), display=False)
acc.round(3)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Zero-shot top-1 accuracy per concept on fresh images of every split (black lines: chance, one over the number of classes).", "name": "fig-model-card-accuracy"}, "image": {"alt": "Grouped bar chart of zero-shot accuracy per concept, one bar per split, with a black chance line over each concept."}}
fig, ax = plt.subplots(figsize=(10, 3.6))
long = acc.drop(columns="chance").reset_index(names="concept").melt("concept", var_name="split", value_name="accuracy")
sns.barplot(data=long, x="concept", y="accuracy", hue="split", ax=ax)
for i, c in enumerate(acc.index):
    ax.hlines(acc.loc[c, "chance"], i - 0.4, i + 0.4, color="black", lw=1.2)
ax.set(ylim=(0, 1.02), title=f"{model}: zero-shot accuracy per concept (black: chance)")
ax.legend(fontsize=8, ncol=3)
plt.show()

# %% [markdown]
# Image↔text retrieval among the test images and the captions that name all their attributes
# (recall at 1, 5 and 10), and how well the shape prompts' maximum softmax score separates
# held-out shapes from known ones (AUROC; 0.5 is chance).

# %% tags=["hide-input"]
retrieval = pd.DataFrame({split: r["retrieval"] for split, r in report.items()}).T
retrieval.columns = [
    c.replace("image_to_text_", "image→text ").replace("text_to_image_", "text→image ") for c in retrieval.columns
]
display(retrieval.round(3))
print(f"novel-shapes OOD AUROC: {report['novel-shapes']['ood_auroc']:.3f}")

# %% [markdown]
# ## Against its targets
#
# The targets set for the concept-world models: zero-shot top-1 per concept and retrieval recall at 1
# on 1,000 fresh test images, as `ccs eval-tiny --model NAME --seed 987654 --json` measures them.
# A concept the model has not learned cannot have heads devoted to it, so the later pages could find
# no heads for it either.

# %% tags=["hide-input"]
targets = {
    "colour": 0.95,
    "scene": 0.95,
    "position": 0.95,
    "size": 0.95,
    "count": 0.95,
    "shape": 0.90,
    "texture": 0.85,
    "image→text R@1": 0.95,
    "text→image R@1": 0.95,
}
TARGET_SEED = 987654  # never a training or analysis seed


def measured(r: dict) -> dict:
    return {
        **r["zero_shot"],
        "image→text R@1": r["retrieval"]["image_to_text_R@1"],
        "text→image R@1": r["retrieval"]["text_to_image_R@1"],
    }


now = evaluate.world_report(clip, tokenizer, seed=TARGET_SEED, n=target_images, splits=["test"])["test"]
short = pd.DataFrame({"target": targets, f"this model ({weights})": pd.Series(measured(now))}).reindex(list(targets))
short["met"] = np.where(short.iloc[:, -1] >= short["target"], "yes", "no")
short.index.name = f"seed {TARGET_SEED}"
missed = list(short.index[short["met"] == "no"])
print("falls short on: " + (", ".join(missed) if missed else "nothing"))
short.round(3)

# %% [markdown]
# Where it confuses one class with another: for the concepts learned last, the share of test images
# of each true class (rows) given each predicted class (columns). A clean diagonal means the concept
# is read off the image; off-diagonal mass shows which classes look alike to the model.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Confusion matrices of the concepts learned last (shape, texture, size, count) on the test images: the share of the images of each true class (rows) given each predicted class (columns).", "name": "fig-model-card-confusion"}, "image": {"alt": "Four heatmaps, one per concept, of predicted against true class shares; darker diagonals mean the concept is recognised."}}
test = world.sample(test_images, seed=seed, split="test")
embeddings = evaluate.image_embeddings(clip, test.images)
hard = ["shape", "texture", "size", "count"]
fig, axes = plt.subplots(1, len(hard), figsize=(14, 3.8), width_ratios=[3, 1.6, 1.3, 1.6])
for ax, concept in zip(axes, hard):
    task = tasks[concept]
    classifier = evaluate.zero_shot_classifier(clip, tokenizer, task.classnames, task.templates)
    predicted = (embeddings @ classifier.T).argmax(1).numpy()
    confusion = pd.crosstab(
        pd.Categorical(np.array(task.classnames)[task.labels(test.attributes)], task.classnames),
        pd.Categorical(np.array(task.classnames)[predicted], task.classnames),
        normalize="index",
        dropna=False,
    )
    sns.heatmap(
        confusion, ax=ax, vmin=0, vmax=1, cmap="Blues", cbar=False, square=True, annot=len(task.classnames) <= 3, fmt=".2f"
    )
    ax.set(title=concept, xlabel="predicted", ylabel="true" if concept == hard[0] else "")
plt.tight_layout()
plt.show()
