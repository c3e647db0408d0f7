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
# # Text-to-video retrieval under pruning
#
# **The paper's claim, here a hypothesis.** An image CLIP used for video (each frame through the image
# tower, the normalised frame embeddings averaged, as in CLIP4Clip's mean pooling) loses more
# text-to-video retrieval when its high-CCS heads are pruned than when low-CCS or random heads are.
#
# On the concept world, a clip is a group of objects moving left, right, up or down for 8 frames, and
# its caption names every attribute and the motion. Retrieval runs both ways: each caption ranks the
# clips (text → video), each clip ranks the captions (video → text); R@K is the share of queries
# whose match is among the top K, MdR and MnR the median and mean rank of the match, and the gallery
# the number of candidates each query ranks. A tie counts against the query (a candidate scoring equal
# to the match is ranked above it). Video → text is ranked as CLIP4Clip ranks it: each clip ranks the
# clips' caption groups, each scored by its best caption for that clip.
#
# **The protocol** (`protocol`) says how clips and captions are prepared, as the paper's code does
# (`paper`, the default: the first caption of each video, the mean of the normalised frame embeddings
# used as it is, the whole test split) or as CLIP4Clip does (`clip4clip`: every caption, the mean
# renormalised). Without renormalisation a clip whose frames agree with each other has a longer mean
# and scores higher for every caption; with it, only the direction counts. On the concept world each
# clip has one caption, so only that difference remains.
#
# A teaching point comes at the end: what mean pooling cannot see. The code is folded away except
# the pruned retrieval itself (`retrieval.reports`: per condition, `ablate.pruned` around
# `evaluate.retrieval_report`).

# %% tags=["hide-input"]
import json
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from myst_nb import glue

from ccs import (
    ablate,
    datasets,
    evalset,
    evaluate,
    headsets,
    intervals,
    models,
    plots,
    pruning,
    record,
    retrieval,
    study,
    verdicts,
    world,
)

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
clips = 500  # [at least 3] concept-world clips (queries in each direction); the page draws three of them
frames = 8  # [at least 1] frames per clip, sampled uniformly (the paper: 12 for MSR-VTT and MSVD, 32 for DiDeMo)
clip_seed = 1  # [at least 0]
protocol = "paper"  # [paper | clip4clip] video protocol: "paper" (the paper's code: first caption, frame mean not renormalised, whole test split) or "clip4clip" (every caption, renormalised)

# %% [markdown]
# ## The clips and the sets pruned

# %% tags=["hide-input"]
print(models.banner(model, weights))
print(f"video protocol: {protocol} ({evalset.PROTOCOLS[evalset.check_protocol(protocol)]})")
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
analysis, table, spec = st.analysis, st.table, st.spec
hs, other, fn = st.sets, st.other, st.fn  # the page's sets; the other text source's and the function's beside them
print(st.describe())
plots.notes(hs.notes)
print("Heads in the paper's categories, this model beside the paper's (a share of the analysed heads):")
display(st.beside_paper().round(1))

batch = world.clips(clips, clip_seed, frames=frames)
captions = [world.full_caption(row) for _, row in batch.attributes.iterrows()]
model_, tokenizer = analysis.model, analysis.tokenizer
text = evaluate.text_embeddings(model_, tokenizer, captions)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Three concept-world clips, frame by frame from left to right, each under the caption that names its objects' attributes and their motion.", "name": "fig-video-clips"}, "image": {"alt": "Three film strips of eight frames each showing small objects moving across a background, with their captions as titles."}}
fig, axes = plt.subplots(3, 1, figsize=(9, 4.4))
for ax, i in zip(axes, range(3)):
    ax.imshow(world.grid(batch.frames[i], nrow=frames, scale=2))
    ax.set_title(captions[i], fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Retrieval, unpruned and pruned
#
# Each condition prunes its heads (`ablate.pruned`), embeds every clip (frames through the image tower,
# then averaged) and ranks clips and captions against each other.

# %% tags=["hide-input"]
conditions = st.conditions(equal=False)  # every source's sets; the page's own unprefixed
means = None
if ablation == "mean":
    means = ablate.head_means(model_, batch.frames[:, 0], layers=spec.analysed_layers)

# %%
reports = retrieval.reports(model, model_, text, batch.frames, conditions, protocol, ablation, means)


# %% tags=["hide-input"]
def hits(name: str, k: int, direction: str = "text_to_video") -> np.ndarray:
    return retrieval.hits(reports, name, k, direction)


rows = []
for name in ["original", "high", "low", "random"]:
    members = [c for c in conditions if pruning.group(c) == name]
    for direction in ("text_to_video", "video_to_text"):
        per = pd.DataFrame([reports[c][direction] for c in members])
        row = {"pruned": name, "direction": direction.replace("_to_", " → ")}
        for k in per.columns:
            if k == "gallery":  # the candidates each query ranks (the same for every condition)
                row[k] = int(per[k].iloc[0])
            elif k != "queries":
                row[k] = per[k].mean() * (100 if k.startswith("R@") else 1)
        _, lo, hi = intervals.mean_ci(hits(name, 1, direction))
        row["R@1 CI"] = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
        if len(members) > 1:
            row["R@1 seed sd"] = 100 * per["R@1"].std(ddof=1)
        rows.append(row)
recalls = pd.DataFrame(rows)
print(
    f"{clips} clips of {frames} frames, one caption each ({protocol} protocol); R@K in % (R@1 with its 95 % "
    f"interval over the queries), every query ranking a gallery of {clips}; random: mean over {len(hs.random)} draws"
)
recalls.set_index(["direction", "pruned"]).sort_index(level=0, sort_remaining=False)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Text-to-video recall at 1, 5 and 10, unpruned and with the high, low or random sets pruned (percentages, 95 % intervals over the queries).", "name": "fig-video-recall"}, "image": {"alt": "Grouped bar chart of text-to-video R@1, R@5 and R@10 for the original model and the three pruned sets, with error bars."}}
plot = pd.DataFrame(
    [
        {"pruned": name, "K": f"R@{k}", **dict(zip(("R", "lo", "hi"), (100 * v for v in intervals.mean_ci(hits(name, k)))))}
        for name in ["original", "high", "low", "random"]
        for k in (1, 5, 10)
    ]
)
fig, ax = plt.subplots(figsize=(8, 3.6))
sns.barplot(plot, x="K", y="R", hue="pruned", ax=ax, errorbar=None)
for bars_, (_, sub) in zip(ax.containers, plot.groupby("pruned", sort=False)):
    ax.errorbar(
        [b.get_x() + b.get_width() / 2 for b in bars_],
        sub["R"],
        yerr=[sub["R"] - sub["lo"], sub["hi"] - sub["R"]],
        fmt="none",
        ecolor="0.2",
        capsize=3,
        lw=1,
    )
ax.set(
    ylabel="text → video recall (%)",
    xlabel="",
    ylim=(0, 105),
    title=f"{model}: text-to-video retrieval of {clips} clips (95 % intervals over the queries)",
)
ax.legend(title="pruned", ncols=4, fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# ## Verdict
#
# Per caption, whether its clip comes first (R@1); the claim predicts that pruning the high set costs
# more than pruning the low set and more than pruning random sets (their mean over the draws): two
# paired differences over the captions, **supported** when both intervals lie above zero,
# **contradicted** when one lies wholly below zero, **inconclusive** otherwise. The paper measures text → video only; the other direction is
# printed for the record.

# %% tags=["hide-input"]
claims = retrieval.claims(reports)
verdict = verdicts.verdict(claims.values())
at_ceiling = retrieval.at_ceiling(reports)  # nothing left to lose at R@1: no verdict
if at_ceiling:
    verdict = "no verdict (R@1 at the ceiling)"
print(
    f"unpruned: text → video R@1 {100 * hits('original', 1).mean():.1f} %, R@5 {100 * hits('original', 5).mean():.1f} %"
    + (
        "; R@5 and R@10 sit at the ceiling, so only R@1 can show a cost"
        if hits("original", 5).mean() >= retrieval.CEILING
        else ""
    )
)
for k, v in claims.items():
    print(f"text → video: extra R@1 lost by pruning high, {k}: {verdicts.interval_text(v)}")
for k, base in (("high vs low", "low"), ("high vs random", "random")):  # the other direction, for the record
    v = intervals.paired_ci(hits(base, 1, "video_to_text"), hits("high", 1, "video_to_text"))
    print(f"video → text: extra R@1 lost by pruning high, {k}: {verdicts.interval_text(v)}")
glue("video-verdict", headsets.verdict_text(hs, verdict), display=False)
r1 = recalls[recalls.direction == "text → video"].set_index("pruned")[["R@1", "R@1 CI"]].round(1)
r1.columns = ["text → video R@1 %", "95 % interval"]
glue("video-r1-table", r1, display=False)
print(
    f"Verdict on {model} ({headsets.whose(hs.source)} sets, {ablation} ablation, text → video R@1): "
    + (
        f"the claim is {verdict.upper()}."
        if hs.paper_test
        else f"no verdict on the paper's claim ({hs.why_not_paper()}); on the ranked sets: {verdict.upper()}."
    )
)


def video_rows(c: dict, s_: headsets.HeadSets) -> dict:
    """The replication records of one source: both comparisons of the page's verdict, each its own claim."""
    return {
        f"video-{k.replace(' ', '-')}": record.row(v, "no verdict (R@1 at the ceiling)" if at_ceiling else None, s_.test)
        for k, v in c.items()
    }


replication_rows = {hs.source: video_rows(claims, hs)}
other_claims, other_verdict = {}, None
for s_ in (x for x in (other, fn) if x is not None):
    c = retrieval.claims(reports, f"{s_.source}: ")
    v = "no verdict (R@1 at the ceiling)" if at_ceiling else verdicts.verdict(c.values())
    replication_rows[s_.source] = video_rows(c, s_)
    if s_ is other:
        other_claims, other_verdict = c, v
    print(
        f"with {headsets.whose(s_.source)} sets: "
        + "; ".join(f"{k} {verdicts.interval_text(x)}" for k, x in c.items())
        + f" -> {v}"
    )
glue("video-other-verdict", other_verdict or "n/a (the pool carries no ground truth)", display=False)
glue(
    "video-ceiling",
    f"unpruned, text → video R@1 is {100 * hits('original', 1).mean():.1f} % and R@5 "
    f"{100 * hits('original', 5).mean():.1f} % over {clips} clips",
    display=False,
)

# %% [markdown]
# ## What mean pooling cannot see
#
# The mean of a clip's frame embeddings does not depend on the order of the frames: a clip and the
# same clip played backwards have **the same embedding**, although one moves left and the other right.
# So no caption can tell them apart. Measured two ways, on the unpruned model:
#
# 1. every clip and its reversal: the largest difference between their embeddings;
# 2. each clip chooses between two captions that differ *only* in the direction of motion (its own,
#    and the opposite: left/right, up/down), and, played backwards, between the same two captions
#    with the other one right. Whatever the model gets right on a clip it must get wrong on its
#    reversal: over both, it sits exactly at chance, 50 %.

# %% tags=["hide-input"]
forward = pruning.clip_embeddings(model, model_, batch.frames, protocol)
backward = pruning.clip_embeddings(model, model_, batch.frames.flip(1), protocol)
gap = float((forward - backward).abs().max())
opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
# captions without the start position (a reversed clip starts elsewhere): they differ only in the motion
motion_caps = [
    world.full_caption({**row, "motion": m}).replace(f" in the {row['position']}", "")
    for _, row in batch.attributes.iterrows()
    for m in world.MOTIONS
]
motion_text = evaluate.text_embeddings(model_, tokenizer, motion_caps).view(clips, len(world.MOTIONS), -1)
truth = np.array([world.MOTIONS.index(m) for m in batch.attributes["motion"]])
reverse = np.array([world.MOTIONS.index(opposite[m]) for m in batch.attributes["motion"]])


def motion_hits(emb: torch.Tensor, right: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Per clip: 1 if the caption with the `right` motion scores above the one with the `wrong` motion
    (a tie counts against, as everywhere on this page)."""
    sim = torch.einsum("nd,nmd->nm", emb, motion_text)
    idx = torch.arange(len(emb))
    return (sim[idx, torch.as_tensor(right)] > sim[idx, torch.as_tensor(wrong)]).float().numpy()


hit = {"forward": motion_hits(forward, truth, reverse), "reversed": motion_hits(backward, reverse, truth)}
hit["both"] = np.concatenate([hit["forward"], hit["reversed"]])
rows = [{"clips": k, **dict(zip(("right %", "lo", "hi"), (100 * v for v in intervals.mean_ci(h))))} for k, h in hit.items()]
motion = pd.DataFrame(rows)
print(f"largest |forward - reversed| over all clip embeddings: {gap:.1e} (float32 rounding)")
print("choosing between the captions of a motion and of its opposite (chance 50 %):")
motion.round(1).set_index("clips")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Mean pooling and the direction of motion: how often each clip prefers the caption with its own direction of motion over the one with the opposite direction, for the clips, for the same clips played backwards, and for both together (95 % intervals; dashed: chance).", "name": "fig-video-motion"}, "image": {"alt": "Three bars, forward, reversed and both, of the share of clips choosing the right motion caption, against a dashed chance line at 50 percent."}}
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(
    motion["clips"],
    motion["right %"],
    yerr=[motion["right %"] - motion["lo"], motion["hi"] - motion["right %"]],
    color=sns.color_palette()[:3],
    capsize=4,
)
ax.axhline(50, ls="--", color="0.3", lw=1)
ax.text(2.45, 52, "chance", ha="right", fontsize=8)
ax.set(ylabel="right motion first (%)", ylim=(0, 100), title="Mean pooling and the direction of motion")
plt.show()

# %% [markdown]
# Above chance on the forward clips alone would not mean that the pooled embedding sees the direction:
# where a clip's objects are (a group moving left tends to sit in the right of the frame, where there
# is room to move left) can correlate with it. Played backwards, the same frames carry the opposite
# answer. Only a model that keeps the order of the frames (a temporal transformer on
# top of the frames, as in CLIP4Clip's seqTransf) can tell the two apart.
#
# ## The paper's numbers
#
# Text-to-video R@1 (%) as published (read off a bar chart, ±0.1): unpruned, high, low and random
# pruned, by the paper's protocol: the first caption of each video against every video of the test
# split (the standard splits have 1,000 videos for MSR-VTT 1k-A, 670 for MSVD and 1,004 for DiDeMo:
# the gallery column). A run of a paper model measures the same conditions on those datasets when
# they are on disk (`ccs data` says where; frames sampled uniformly over the whole video, 12 or 32 a
# video), with this page's protocol, and puts its R@1 beside the paper's only when it ranked the whole
# split, as the paper did; its gallery is printed beside it either way.

# %% tags=["hide-input"]
paper = models.paper()
measured, galleries = {}, {}  # dataset -> {condition group: text -> video R@1 %}; dataset -> videos ranked
for name in ("MSR-VTT", "MSVD", "DiDeMo"):
    info = datasets.info(name)
    if spec.embedded or not info["present"]:
        print(f"{name}: not measured ({f'{model} knows only the concept world' if spec.embedded else info['how']})")
        continue
    vs = datasets.load_video(name, protocol=protocol)  # the whole test split
    vtext = evaluate.text_embeddings(model_, tokenizer, vs.captions)
    reps = retrieval.reports(model, model_, vtext, vs.frames, conditions, protocol, ablation, means, vs.video_of_text)
    recall = {}
    for name_, rep in reps.items():
        recall.setdefault(pruning.group(name_), []).append(100 * rep["text_to_video"]["R@1"])
    galleries[name] = vs.gallery
    standard = datasets.spec(name).split_videos
    split = f"the whole split file ({vs.split_videos} videos{'' if vs.split_videos == standard else f'; the standard split has {standard}'})"
    if vs.full:
        measured[name] = {g: float(np.mean(v)) for g, v in recall.items()}
    print(
        textwrap.fill(
            f"{name}: {len(vs.captions)} captions ranked against a gallery of {vs.gallery} videos, "
            f"{protocol} protocol; "
            + (
                split
                if vs.full
                else f"{len(vs.missing)} videos of the split are missing, so this R@1 is not put beside the paper's"
            ),
            110,
        )
    )
groups_ = ["original", "high", "low", "random"]
pd.DataFrame(
    [
        {
            "dataset": ds,
            "model": m,
            "paper: gallery": datasets.spec(ds).split_videos,
            **{f"paper: {g}": x for g, x in zip(groups_, v)},
            **(
                {}
                if spec.embedded
                else {
                    "this run: gallery": galleries.get(ds) if m == model else None,
                    **{f"this run: {g}": (measured[ds][g] if m == model and ds in measured else float("nan")) for g in groups_},
                }
            ),
        }
        for ds, per in paper["video_t2v_r1"].items()
        for m, v in per.items()
    ]
).set_index(["dataset", "model"])

# %% tags=["remove-cell", "hide-input"]
summary = {
    "model": model,
    "weights": weights,
    "sets": hs.source,
    "rule": hs.rule,
    "paper_test": hs.paper_test,
    "ablation": ablation,
    "clips": clips,
    "frames": frames,
    "clip_seed": clip_seed,
    "protocol": protocol,
    "notes": hs.notes,
    "video_galleries": galleries,  # videos ranked per real dataset (its R@1 is beside the paper's only for the whole split)
    "retrieval": recalls.to_dict("records"),
    "claims": {k: dict(zip(("difference", "low", "high"), v)) for k, v in claims.items()},
    "verdict": verdict,
    "other_sets": other.source if other is not None else None,
    "other_verdict": other_verdict,
    "other_claims": {k: dict(zip(("difference", "low", "high"), v)) for k, v in other_claims.items()},
    "replication": replication_rows,
    "seeds": seeds,
    "motion_only": {"reversal_gap": gap, "r1": motion.to_dict("records")},
    # this run's rows of the paper's text-to-video table, for the paper-vs-book page (ccs.paper_tables)
    "paper_tables": {"video_t2v_r1": {ds: [v[g] for g in groups_] for ds, v in measured.items()}},
}
with open("video.json", "w") as f:
    json.dump(json.loads(json.dumps(summary).replace("NaN", "null")), f, indent=1)
