"""The text-to-video page's claims (notebooks/video.py, and the seeds page's repeat of them) on its
retrieval reports: per condition, the ranks `evaluate.retrieval_report` gives each query; a group's
draws ("random/0", "random/1" ...) stand together under the group's name."""

from __future__ import annotations

import numpy as np

from ccs import ablate, evaluate, intervals
from ccs.pruning import by_first_layer, clip_embeddings, group, stream

CEILING = 0.99  # unpruned R@1 at or above this leaves nothing to lose: no verdict


def reports(
    model_name: str,
    module,
    text,
    frames,
    conditions: dict,
    protocol: str = "paper",
    ablation: str = "zero",
    means=None,
    video_of_text=None,
) -> dict:
    """Per condition (name -> heads to prune): the retrieval report (`evaluate.retrieval_report`) of
    the captions' embeddings `text` against the clips `frames` [N, F, 3, H, W] with the condition's
    heads pruned (`ablation`: "zero" or "mean", then with the heads' `means`); caption i describes clip
    `video_of_text[i]` (default: clip i)."""
    video_of_text = np.arange(len(frames)) if video_of_text is None else video_of_text
    out, shared = {}, stream(module, frames.flatten(0, 1))
    for name in by_first_layer(module, conditions):
        heads = conditions[name]
        with ablate.pruned(module, heads, ablation, means=means):
            emb = clip_embeddings(model_name, module, frames, protocol, shared, heads)
        out[name] = evaluate.retrieval_report(text, emb, video_of_text)
    return {name: out[name] for name in conditions}


def draw_hits(reports: dict, name: str, k: int, direction: str = "text_to_video") -> np.ndarray:
    """[draws, queries]: per draw of a group (one row for a set), 1 where the match is in the top k."""
    members = [c for c in reports if group(c) == name]
    if not members:
        raise KeyError(f"no condition or group {name!r} among the reports ({', '.join(reports)})")
    return np.stack([reports[c]["ranks"][direction] <= k for c in members]).astype(float)


def hits(reports: dict, name: str, k: int, direction: str = "text_to_video") -> np.ndarray:
    """Per query: 1 if the match is in the top k (a group: the mean over its draws)."""
    return draw_hits(reports, name, k, direction).mean(0)


def claims(reports: dict, prefix: str = "") -> dict[str, tuple[float, float, float]]:
    """High against low and against random on text-to-video R@1, per caption: the extra R@1 lost by
    pruning the high set; the random sets' interval resamples the captions and the draws."""
    return {
        f"high vs {base}": intervals.two_level_ci(draw_hits(reports, prefix + base, 1), draw_hits(reports, prefix + "high", 1))
        for base in ("low", "random")
    }


def at_ceiling(reports: dict) -> bool:
    """Whether the unpruned model already finds nearly every clip first (R@1 >= CEILING)."""
    return hits(reports, "original", 1).mean() >= CEILING
