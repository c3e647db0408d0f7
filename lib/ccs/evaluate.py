"""Evaluation: zero-shot classification and image<->text retrieval, for any CLIP model.

Generic on purpose: the functions take a model, a tokenizer and tensors (or a world batch and a
task), so the same code scores the tiny model on the concept world, a paper model on a real
dataset, and any model with heads ablated.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ccs import intervals, models


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_text(model, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text(tokens)`, computed on the tokens up to the batch's last end-of-text token.

    CLIP's text tower is causal and reads its output at the end-of-text token (the highest id: its
    ``argmax`` pooling), so the padding after that token cannot change the result, yet open_clip runs
    the whole context (77 tokens for the paper's models; a prompt is about 10). Cutting it gives the
    same embeddings to float rounding, several times faster (`benchmarks/text_encoding.py`). Text
    towers that pool otherwise (open_clip's CustomTextCLIP, e.g. Hugging Face encoders) run as they are."""
    if getattr(model, "text_pool_type", None) != "argmax" or getattr(model, "attn_mask", None) is None:
        return model.encode_text(tokens)
    n = int(tokens.argmax(-1).max()) + 1
    tokens = tokens[:, :n]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = x[torch.arange(len(x), device=x.device), tokens.argmax(-1)]
    proj = model.text_projection
    return x if proj is None else proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


@torch.no_grad()
def text_embeddings(model, tokenizer: Callable, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
    """Normalised text embeddings [N, D] (float32, on the CPU)."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[i : i + batch_size])).to(_device(model))
        out.append(F.normalize(encode_text(model, tokens).float(), dim=-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def zero_shot_classifier(model, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """The prompt-ensemble classifier [C, D]: for each class, the mean of the normalised embeddings
    of its prompts (every template filled with the class name), renormalised (as in CLIP and the
    paper)."""
    prompts = [t.format(c) for c in classnames for t in templates]
    emb = text_embeddings(model, tokenizer, prompts).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(1), dim=-1)


@torch.no_grad()
def image_embeddings(
    model, images_uint8: torch.Tensor, batch_size: int = 256, preprocess: Callable | None = None
) -> torch.Tensor:
    """Normalised image embeddings [N, D] (float32, CPU) of uint8 images [N, 3, H, W]."""
    preprocess = preprocess or models.tensor_preprocess(model)
    out = []
    for i in range(0, len(images_uint8), batch_size):
        x = preprocess(images_uint8[i : i + batch_size]).to(_device(model))
        out.append(F.normalize(model.encode_image(x).float(), dim=-1).cpu())
    return torch.cat(out)


def accuracy(image_emb: torch.Tensor, classifier: torch.Tensor, labels) -> float:
    """Top-1 accuracy of nearest-class-embedding prediction; rows labelled -1 are skipped."""
    labels = torch.as_tensor(np.asarray(labels))
    keep = labels >= 0
    pred = (image_emb[keep] @ classifier.T).argmax(-1)
    return float((pred == labels[keep]).float().mean()) if keep.any() else float("nan")


def zero_shot_accuracy(model, tokenizer: Callable, batch, task, image_emb: torch.Tensor | None = None) -> float:
    """Zero-shot top-1 accuracy of `model` on a world batch (or anything with `.images` and
    `.attributes`) for one `task` (with `.classnames`, `.templates` and `.labels(attributes)`).
    Pass `image_emb` to reuse embeddings across tasks."""
    if image_emb is None:
        image_emb = image_embeddings(model, batch.images)
    clf = zero_shot_classifier(model, tokenizer, task.classnames, task.templates)
    return accuracy(image_emb, clf, task.labels(batch.attributes))


def zero_shot_report(model, tokenizer: Callable, batch, tasks: dict) -> dict[str, float]:
    """Zero-shot accuracy for every task of a dict {name: task}, with shared image embeddings."""
    emb = image_embeddings(model, batch.images)
    return {name: zero_shot_accuracy(model, tokenizer, batch, t, image_emb=emb) for name, t in tasks.items()}


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x if x.dtype == torch.bool or not x.is_floating_point() else x.float()).numpy()
    return np.asarray(x)


def retrieval_ranks(sim, matches) -> np.ndarray:
    """The 1-based rank of each query's best-ranked correct candidate (int64 [Q]).

    `sim`: similarities [Q, G] (torch or numpy; higher = better); `matches`: bool [Q, G], True where
    a candidate is correct for the query (a query may have several, e.g. a video with several
    captions: the best-ranked one counts).

    Tie rule: a candidate scoring EQUAL to the best correct one counts as ranked above it, so a tie
    counts against the query: ``rank = 1 + #(incorrect candidates scoring >= the best correct
    score)``. (Other correct candidates never push the rank down.) A constant similarity matrix thus
    gives every query the worst rank, not the best. Raises ValueError for a query without a correct
    candidate, mismatched shapes, or NaN similarities.
    """
    s = _numpy(sim).astype(np.float64)  # float32 -> float64 is exact: ties and order are kept
    m = _numpy(matches).astype(bool)
    if s.ndim != 2 or s.shape != m.shape:
        raise ValueError(f"sim and matches must both be [Q, G], got {s.shape} and {m.shape}")
    if np.isnan(s).any():
        raise ValueError("similarities contain NaN")
    missing = np.flatnonzero(~m.any(1))
    if len(missing):
        raise ValueError(f"{len(missing)} queries have no correct candidate (e.g. rows {missing[:5].tolist()})")
    best = np.where(m, s, -np.inf).max(1)
    return 1 + ((s >= best[:, None]) & ~m).sum(1).astype(np.int64)


def retrieval_metrics(ranks, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Retrieval summary of 1-based ranks (from `retrieval_ranks`): ``{"R@k": share of ranks <= k
    for each k, "MdR": median rank, "MnR": mean rank}``."""
    r = _numpy(ranks).astype(float).ravel()
    if r.size == 0:
        raise ValueError("no ranks")
    out = {f"R@{k}": float((r <= k).mean()) for k in ks}
    out["MdR"] = float(np.median(r))
    out["MnR"] = float(r.mean())
    return out


def retrieval_report(text_emb, video_emb, video_of_text, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Text<->video retrieval with one or more captions per video (as MSR-VTT / MSVD), ranked as
    CLIP4Clip ranks them (its ``tensor_text_to_video_metrics`` and ``tensor_video_to_text_sim``).

    `text_emb` [T, D] and `video_emb` [V, D] are the embeddings to compare by dot product (normalised
    or not: see `pool_frames`); `video_of_text` (int [T]) is the video each caption describes.

    - text_to_video: each caption queries the V videos (one correct);
    - video_to_text: each video queries the V *videos' caption groups*, each group scored by its best
      caption for that video; its own group is correct. (Ranking a video's best caption among all T
      captions instead gives other, not comparable, numbers when videos have several captions; with
      one caption per video the two are the same.)

    Both directions rank V candidates: the gallery. Ties count against the query (see
    `retrieval_ranks`); every video needs at least one caption. Returns ``{"text_to_video": metrics,
    "video_to_text": metrics, "ranks": {"text_to_video": int [T], "video_to_text": int [V]}}``,
    metrics as `retrieval_metrics` plus ``"gallery"`` (V) and ``"queries"``."""
    t = _numpy(text_emb).astype(np.float64)
    v = _numpy(video_emb).astype(np.float64)
    vid = _numpy(video_of_text).astype(np.int64).ravel()
    if len(vid) != len(t):
        raise ValueError(f"video_of_text has {len(vid)} entries for {len(t)} captions")
    if len(vid) and (vid.min() < 0 or vid.max() >= len(v)):
        raise ValueError(f"video_of_text must index the {len(v)} videos")
    empty = np.setdiff1d(np.arange(len(v)), vid)
    if len(empty):
        raise ValueError(f"{len(empty)} videos have no caption (e.g. videos {empty[:5].tolist()})")
    sim = t @ v.T  # [T, V]
    matches = vid[:, None] == np.arange(len(v))[None, :]
    # group[i, j]: the best score of video j's captions for video i (CLIP4Clip's max over each group)
    group = np.full((len(v), len(v)), -np.inf)
    np.maximum.at(group.T, vid, sim)
    ranks = {"text_to_video": retrieval_ranks(sim, matches), "video_to_text": retrieval_ranks(group, np.eye(len(v), dtype=bool))}
    return {
        **{name: {**retrieval_metrics(r, ks), "gallery": len(v), "queries": len(r)} for name, r in ranks.items()},
        "ranks": ranks,
    }


def recall_ci(ranks, k: int, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """R@k of 1-based ranks and its percentile bootstrap interval over the queries (`mean_ci` of
    ``ranks <= k``): (recall, low, high)."""
    return intervals.mean_ci(_numpy(ranks).ravel() <= k, confidence=confidence, seed=seed)


def retrieval_recall(image_emb: torch.Tensor, text_emb: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K for paired embeddings (row i of each is a matching pair), both directions:
    ``{"image_to_text_R@1": ..., "text_to_image_R@1": ..., ...}``. Ranks come from
    `retrieval_ranks` with identity matches, so a tie with the true match counts against it."""
    sim = image_emb.float() @ text_emb.float().T
    eye = np.eye(len(sim), dtype=bool)
    out = {}
    for name, s in (("image_to_text", sim), ("text_to_image", sim.T)):
        rank = retrieval_ranks(s, eye)
        for k in ks:
            out[f"{name}_R@{k}"] = float((rank <= k).mean())
    return out


def pool_frames(frame_emb: torch.Tensor, protocol: str = "paper") -> torch.Tensor:
    """Clip embeddings [N, D] from normalised frame embeddings [N, F, D]: their mean over the frames
    (mean pooling, as CLIP4Clip's meanP and the paper), used as it is under the ``paper`` protocol
    (the paper's code does not renormalise it, so a clip whose frames agree scores higher) and
    renormalised under ``clip4clip`` (`ccs.evalset.PROTOCOLS`)."""
    from ccs.evalset import check_protocol

    mean = frame_emb.mean(1)
    return F.normalize(mean, dim=-1) if check_protocol(protocol) == "clip4clip" else mean


def video_embeddings(model, frames_uint8: torch.Tensor, batch_size: int = 256, protocol: str = "paper") -> torch.Tensor:
    """Clip embeddings [N, D] of uint8 frames [N, F, 3, H, W]: every frame through the image tower,
    normalised, then `pool_frames` (mean pooling, renormalised only under ``clip4clip``)."""
    n, f = frames_uint8.shape[:2]
    emb = image_embeddings(model, frames_uint8.flatten(0, 1), batch_size=batch_size)
    return pool_frames(emb.view(n, f, -1), protocol)


def zero_shot_scores(
    image_emb: torch.Tensor, classifier: torch.Tensor, labels, logit_scale: float = 100.0
) -> dict[str, np.ndarray]:
    """Per-image zero-shot scores over the labelled rows (label >= 0), in row order:

    - ``correct``: 1 if the top-1 class is right (the accuracy is its mean);
    - ``p_true``: the softmax probability of the right class, logits = `logit_scale` * cosine (pass
      the model's own ``logit_scale.exp()``). A graded measure: on an easy task top-1 sits at the
      ceiling and hides what pruning does, the probability still moves;
    - ``margin``: cosine of the right class minus the best wrong class (> 0 iff correct, ties aside).
    """
    labels = torch.as_tensor(np.asarray(labels))
    keep = labels >= 0
    sim = image_emb[keep].float() @ classifier.float().T
    y = labels[keep]
    true = sim.gather(1, y[:, None])[:, 0]
    other = sim.scatter(1, y[:, None], float("-inf")).amax(1)
    return {
        "correct": (sim.argmax(1) == y).float().numpy(),
        "p_true": torch.softmax(logit_scale * sim, 1).gather(1, y[:, None])[:, 0].numpy(),
        "margin": (true - other).numpy(),
    }


MCM_TEMPERATURE = 1.0


def mcm_scores(image_emb: torch.Tensor, classifier: torch.Tensor, temperature: float = MCM_TEMPERATURE) -> torch.Tensor:
    """Maximum concept matching score (Ming et al., NeurIPS 2022): the largest softmax probability
    over the classes of the cosine similarities divided by a temperature, ``max_i exp(s_i / T) /
    sum_j exp(s_j / T)``. Low scores flag out-of-distribution images.

    The temperature is MCM's: T = 1, the value its paper uses and its code's default (``--T 1`` in
    deeplearning-wisc/MCM, which divides the cosine similarities by T before the softmax); not CLIP's
    logit scale (100 x cosine, T = 0.01), which zero-shot classification uses. T changes which images
    score high relative to others, so AUROC and FPR95 depend on it."""
    return torch.softmax(image_emb @ classifier.T / temperature, dim=-1).amax(-1)


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve for telling in-distribution (higher scores) from OOD inputs.

    As the Mann-Whitney statistic (the share of in/out pairs ranked right, ties counting half),
    which is the ROC curve's trapezoidal area, sklearn's `roc_auc_score`, exactly; from average
    ranks it costs a sort, a tenth of sklearn's input checks, which matters inside a bootstrap."""
    from scipy.stats import rankdata

    s_in, s_out = np.asarray(scores_in, float).ravel(), np.asarray(scores_out, float).ravel()
    n_in, n_out = len(s_in), len(s_out)
    if not n_in or not n_out:
        raise ValueError(f"AUROC needs scores on both sides (got {n_in} in-distribution, {n_out} OOD)")
    ranks = rankdata(np.r_[s_in, s_out])
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


class ResampledAuroc:
    """`auroc` of bootstrap resamples of fixed scores, from how often each score is drawn (`counts`):
    the in/out pairs ranked right counted against the OOD scores sorted once, so a resample costs a
    cumulative sum instead of a sort of all its scores (the bootstraps of the OOD pages draw thousands).
    Bit for bit `auroc` of the resampled arrays: both count the same pairs in whole and half units, which
    float64 holds exactly, and divide by the same number.

        at = ResampledAuroc(s_in, s_out)
        at(counts(rng.integers(0, n_in, n_in), n_in), counts(rng.integers(0, n_out, n_out), n_out))
    """

    def __init__(self, scores_in, scores_out):
        s_in, s_out = np.asarray(scores_in, float).ravel(), np.asarray(scores_out, float).ravel()
        if not len(s_in) or not len(s_out):
            raise ValueError(f"AUROC needs scores on both sides (got {len(s_in)} in-distribution, {len(s_out)} OOD)")
        self.nan = bool(np.isnan(s_in).any() or np.isnan(s_out).any())  # `auroc` is NaN then, whatever is drawn
        self.order = np.argsort(s_out, kind="stable")
        ranked = s_out[self.order]
        self.below = np.searchsorted(ranked, s_in, "left")  # for each in-distribution score: the OOD ones under it
        self.upto = np.searchsorted(ranked, s_in, "right")  # ... and those equal to it as well

    def __call__(self, counts_in: np.ndarray, counts_out: np.ndarray) -> float:
        if self.nan:
            return float("nan")
        drawn = np.concatenate([[0], np.cumsum(counts_out[self.order])])  # OOD draws up to each sorted score
        below = drawn[self.below]
        pairs = counts_in @ (below + 0.5 * (drawn[self.upto] - below))
        return float(pairs / (int(counts_in.sum()) * int(counts_out.sum())))


def counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of `n` items is drawn by a resample's `indices`."""
    return np.bincount(indices, minlength=n)


def fpr_at_tpr(scores_in, scores_out, tpr: float = 0.95) -> float:
    """False-positive rate on out-of-distribution inputs at the threshold that accepts a share
    `tpr` of the in-distribution inputs (higher scores = in-distribution): FPR95 for tpr=0.95.
    From sklearn.metrics.roc_curve (all thresholds kept): the smallest FPR among the thresholds
    with TPR >= `tpr`. Lower is better."""
    from sklearn.metrics import roc_curve

    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    s_in, s_out = np.asarray(scores_in, float).ravel(), np.asarray(scores_out, float).ravel()
    if not len(s_in) or not len(s_out):
        raise ValueError("need in-distribution and out-of-distribution scores")
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    fpr, tprs, _ = roc_curve(y, np.r_[s_in, s_out], drop_intermediate=False)
    return float(fpr[tprs >= tpr - 1e-12].min())  # slack: k/n rounding, e.g. 19/20 vs 0.95


def ood_metrics(scores_in, scores_out) -> dict[str, float]:
    """OOD detection summary (higher scores = in-distribution): ``{"auroc": ..., "fpr95": ...}``."""
    return {"auroc": auroc(scores_in, scores_out), "fpr95": fpr_at_tpr(scores_in, scores_out, 0.95)}


def world_report(model, tokenizer: Callable, seed: int = 1, n: int = 1000, splits: Sequence[str] = ("test",)) -> dict:
    """Zero-shot accuracy per concept and image<->text retrieval (captions naming every attribute)
    on freshly generated concept-world images, per split. For "novel-shapes" the shape accuracy is
    undefined (NaN: those shapes have no class) and `ood_auroc` says how well the shape prompts'
    MCM score separates them from test images."""
    from ccs import world

    report, test_scores = {}, None
    tasks = world.tasks()  # each task's classifier once for every split (the text tower dominates on CPU)
    clfs = {c: zero_shot_classifier(model, tokenizer, t.classnames, t.templates) for c, t in tasks.items()}
    for split in splits:
        batch = world.sample(n, seed, split)
        img = image_embeddings(model, batch.images)
        zs = {c: accuracy(img, clfs[c], t.labels(batch.attributes)) for c, t in tasks.items()}
        txt = text_embeddings(model, tokenizer, [world.full_caption(r) for _, r in batch.attributes.iterrows()])
        report[split] = {"zero_shot": zs, "retrieval": retrieval_recall(img, txt)}
        if split == "novel-shapes":
            shape_clf = clfs["shape"]
            if test_scores is None:
                test_scores = mcm_scores(image_embeddings(model, world.sample(n, seed, "test").images), shape_clf)
            report[split]["ood_auroc"] = auroc(test_scores, mcm_scores(img, shape_clf))
    return report
