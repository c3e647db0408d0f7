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
# What the model under study is: its architecture, the size of each part, and how images are
# prepared for it. Every other page of the book analyses the attention heads counted here.

# %%
import pandas as pd
import seaborn as sns
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from ccs import models, plots

plots.style()

# %% tags=["parameters", "hide-input"]
model = "ccs-tiny"

# %% [markdown]
# ## Architecture

# %%
spec = models.spec(model)
try:
    clip, preprocess, tokenizer = models.load(model)
    trained = True
except models.WeightsNotFoundError as err:
    if not spec.embedded:
        raise  # a paper model without its weights: the error says how to fetch them
    clip, preprocess, tokenizer = models.load(model, untrained=True)
    trained = False
    display(Markdown(f":::{{warning}}\nThe weights of `{model}` are not in the package yet, so this "
                     "page describes a **randomly initialised, untrained** model of the same "
                     "architecture.\n:::"))

summary = pd.Series(models.architecture(model, clip), name="value")
summary["weights"] = "trained" if trained else "untrained (random init)"
print(summary.to_string())

# %% [markdown]
# ## Where the parameters are
#
# The token embedding of the text tower (one row per BPE token of CLIP's 49,408-word vocabulary)
# is the largest single block; the heads this book studies live in the vision transformer.

# %%
parts = models.parameter_counts(clip)
params = pd.DataFrame({"part": list(parts), "parameters": list(parts.values())})
params["share %"] = (100 * params["parameters"] / params["parameters"].sum()).round(1)
print(params.to_string(index=False))
print(f"total parameters: {params['parameters'].sum():,}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.barplot(data=params, y="part", x="parameters", ax=ax, color=sns.color_palette()[0])
ax.set(xlabel="parameters", ylabel="", title=f"{model}: parameters by part")
plt.show()
