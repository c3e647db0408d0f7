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

visual, cfg = clip.visual, clip.visual.preprocess_cfg
summary = pd.Series({
    "model": model,
    "weights": "trained" if trained else "untrained (random init)",
    "open_clip architecture": spec.open_clip,
    "image size": f"{cfg['size'][0]} x {cfg['size'][1]}",
    "patch size": visual.patch_size[0],
    "vision layers": len(visual.transformer.resblocks),
    "heads per layer": visual.transformer.resblocks[0].attn.num_heads,
    "vision width": visual.transformer.width,
    "head width": visual.transformer.width // visual.transformer.resblocks[0].attn.num_heads,
    "embedding dim": visual.output_dim,
    "text context": clip.context_length,
    "analysed layers": ", ".join(map(str, spec.analysed_layers)),
    "image mean": tuple(round(m, 3) for m in cfg["mean"]),
    "image std": tuple(round(s, 3) for s in cfg["std"]),
}, name="value")
print(summary.to_string())

# %% [markdown]
# ## Where the parameters are
#
# The token embedding of the text tower (one row per BPE token of CLIP's 49,408-word vocabulary)
# is the largest single block; the heads this book studies live in the vision transformer.

# %%
def count(module) -> int:
    return sum(p.numel() for p in module.parameters())

parts = {
    "vision: patch + position embedding": count(visual.conv1) + visual.positional_embedding.numel()
    + visual.class_embedding.numel(),
    "vision: attention": sum(count(b.attn) for b in visual.transformer.resblocks),
    "vision: MLP": sum(count(b.mlp) for b in visual.transformer.resblocks),
    "vision: norms + projection": count(visual.ln_pre) + count(visual.ln_post) + visual.proj.numel()
    + sum(count(b.ln_1) + count(b.ln_2) for b in visual.transformer.resblocks),
    "text: token embedding": clip.token_embedding.weight.numel(),
    "text: transformer": count(clip.transformer),
    "text: norms + projection": count(clip.ln_final) + clip.text_projection.numel()
    + clip.positional_embedding.numel(),
}
params = pd.DataFrame({"part": list(parts), "parameters": list(parts.values())})
params["share %"] = (100 * params["parameters"] / count(clip)).round(1)
print(params.to_string(index=False))
print(f"total parameters: {count(clip):,}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.barplot(data=params, y="part", x="parameters", ax=ax, color=sns.color_palette()[0])
ax.set(xlabel="parameters", ylabel="", title=f"{model}: parameters by part")
plt.show()
