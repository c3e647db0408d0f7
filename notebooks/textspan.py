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
# # Heads described by text (TextSpan)
#
# The paper describes every attention head of a CLIP image encoder's last layers by five texts,
# following TextSpan (Gandelsman et al., 2024). This page does it for the model under study.
#
# **Decomposition.** The normalised image embedding is an exact sum of terms: one per attention
# head of the last $K$ layers, one per MLP of those layers, and one for everything before them.
# A head's term needs only the class token's row of its attention,
#
# $$c_{l,h} = \frac{1}{\lVert e \rVert}\,\mathrm{LN}^{\mathrm{lin}}_{\mathrm{post}}\!\Big(z_{l,h}[\mathrm{CLS}]\, W_O^{(h)\top} + \tfrac{1}{H} b_O\Big)\, P,$$
#
# where the final layer norm is linearised by freezing the image's own standard deviation and $P$
# is the output projection. The terms sum to the embedding to floating-point precision.
# By default (`convention="centred"`) each term is centred by its own mean, as the linearised layer
# norm does to any input, so a head's term depends on nothing but that head; TextSpan's reference
# code instead shares the layer norm's mean and bias equally among all terms
# (`convention="textspan"`). Both sum to the same embedding.
#
# **TextSpan.** For one head, the candidate texts of a description pool are projected onto the
# subspace the head writes into; then, five times, the text whose direction varies most across the
# images is chosen and its direction removed from the head's outputs and from every candidate.
#
# **What this page establishes**: the decomposition is exact, every analysed head gets five texts,
# and those texts keep what the heads contribute to zero-shot accuracy
# ({numref}`fig-textspan-zero-shot`). The code behind the tables and figures is folded away; the one
# call the page is about, `textspan.analyse` (decompose the images, run TextSpan on every head), is
# shown.

# %% tags=["hide-input"]
import json
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ccs import decompose, models, plots
from ccs import textspan as ts

plots.style()
pd.set_option("display.max_colwidth", None, "display.width", 250)

# %% tags=["parameters", "hide-input"]
model = "ccs-tiny"  # [model] a registered model (`ccs models`)
weights = "trained"  # [trained | random] "trained", or "random": the same architecture untrained (tests the path, no download)
images = 1000  # [at least 2] concept-world test images to decompose
pool = "world"  # [pool] "world", "textspan" (TextSpan's 3,498 descriptions), a pool file or a URL
last_layers = 4  # [1 .. layers]
texts_per_head = 5  # [at least 1]
seed = 0  # [at least 0]
convention = "centred"  # [centred | textspan] how ln_post's mean and bias are split among the terms

# %% [markdown]
# ## Decomposing the images

# %% tags=["hide-input"]
print(models.banner(model, weights))

# %%
a = ts.analyse(
    model,
    images=images,
    pool=pool,
    layers=last_layers,
    texts=texts_per_head,
    seed=seed,
    convention=convention,
    progress=False,
    untrained=weights == "random",
)

# %% tags=["hide-input"]
dec = a.decomposition
N, K, H, D = dec.heads.shape
pd.Series(
    {
        "images": N,
        "analysed layers": f"{dec.layers[0]}-{dec.layers[-1]}",
        "heads per layer": H,
        "embedding dim": D,
        "pool": a.pool.name,
        "pool descriptions": len(a.pool),
    },
    name="value",
).to_frame()

# %% [markdown]
# The identity, checked on a few images in full precision: the terms sum to the normalised
# `encode_image` output. The stored terms are half precision, which is plenty for what follows.

# %% tags=["hide-input"]
x = models.tensor_preprocess(a.model)(a.batch.images[:8])
with torch.no_grad():
    exact = decompose.components(a.model, x, layers=last_layers, convention=convention)
    reference = a.model.encode_image(x, normalize=True)
error = (exact.total() - reference).abs().max().item()
stored = np.abs(dec.embeddings()[:8] - reference.numpy()).max()
print(f"sum of terms = embedding (fp32), max error below 1e-5: {error < 1e-5}")
print(f"stored fp16 terms, max error below 1e-2: {stored < 1e-2}")

# %% [markdown]
# ## Every analysed head and its texts
#
# Texts in the order TextSpan chose them; `explained` is the share of the head's variance across
# the images that their directions capture. For pools with ground truth (the world pool), the
# concept behind each text is known: `top concept` is the most frequent one among the head's
# texts and `agree` how many of them share it -- a ground-truth preview of the paper's CCS.

# %% tags=["hide-input"]
records = a.records()
table = pd.DataFrame(records)
if "concepts" in table:
    top = table["concepts"].map(lambda cs: Counter(cs).most_common(1)[0])  # ties: first chosen
    table["top concept"] = top.str[0]
    table["agree"] = top.str[1]
table["explained"] = table["explained"].round(2)
table["texts"] = table["texts"].map(" | ".join)
cols = ["layer", "head", "explained", "texts"] + [c for c in ("top concept", "agree") if c in table]
table[cols].set_index(["layer", "head"])

# %% tags=["hide-input"] mystnb={"figure": {"caption": "How much of each head's variance across the images its five texts explain, one cell per analysed head (rows: layers, columns: heads).", "name": "fig-textspan-explained"}, "image": {"alt": "Heatmap of variance explained per head by layer and head index, annotated with the values."}}
grid = table.pivot(index="layer", columns="head", values="explained")
fig, ax = plt.subplots(figsize=(1.2 + 0.55 * H, 0.9 + 0.5 * K))
sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax, cbar_kws={"label": "variance explained"})
ax.set(title=f"{model}: head variance explained by {texts_per_head} texts")
plt.show()

# %% [markdown]
# How much of each head's variance every successive text adds (the first pick is not always the
# largest: TextSpan picks by projected variance, which also rewards texts with long projections).

# %% tags=["hide-input"]
steps = pd.DataFrame([{"pick": i + 1, "variance": v} for r in records for i, v in enumerate(r["variance"])])
steps.groupby("pick")["variance"].agg(["mean", "min", "max"]).round(3)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The share of a head's variance that each successive text adds, in the order TextSpan chose the texts, over all analysed heads.", "name": "fig-textspan-picks"}, "image": {"alt": "Box plots of the variance share added by the first to the fifth chosen text."}}
fig, ax = plt.subplots(figsize=(5, 3))
sns.boxplot(data=steps, x="pick", y="variance", ax=ax, color=sns.color_palette()[0])
ax.set(xlabel="text (selection order)", ylabel="share of head variance")
plt.show()

# %% [markdown]
# ## Do the texts keep what the heads contribute?
#
# TextSpan's own check: zero-shot accuracy on the concept world's tasks from the stored
# decomposition (`original`), with every analysed head replaced by its reconstruction from its
# texts (`textspan`: the head's mean plus its projection onto the texts' directions), and with
# every analysed head replaced by its mean over the images (`mean-ablated`, a direct-effect
# ablation on the stored terms, no forward pass). Good descriptions keep `textspan` near
# `original`; the gap to `mean-ablated` shows how much the heads carry.

# %% tags=["hide-input"]
check = ts.zero_shot_check(a)
check.round(3).set_index("task")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "TextSpan's check: zero-shot accuracy per task from the stored decomposition (original), with every analysed head replaced by its reconstruction from its texts (textspan), and with every analysed head replaced by its mean (mean-ablated).", "name": "fig-textspan-zero-shot"}, "image": {"alt": "Grouped bar chart of zero-shot accuracy per task for the original, textspan-reconstructed and mean-ablated embeddings."}}
long = check.melt(
    id_vars="task", value_vars=["original", "textspan", "mean-ablated"], var_name="embedding", value_name="accuracy"
)
fig, ax = plt.subplots(figsize=(8, 3.2))
sns.barplot(data=long, x="task", y="accuracy", hue="embedding", ax=ax)
ax.set(xlabel="", ylim=(0, 1), title="zero-shot accuracy")
plt.show()

# %% tags=["remove-cell", "hide-input"]
out = {
    "model": model,
    "weights": weights,
    "images": N,
    "pool": a.pool.name,
    "pool_size": len(a.pool),
    "layers": dec.layers,
    "texts_per_head": texts_per_head,
    "convention": dec.meta["convention"],
    "heads": records,
    "zero_shot": check.round(4).to_dict(orient="records"),
}
Path("textspan.json").write_text(json.dumps(out, indent=1))
