"""What the evaluations consume, defined below both the datasets that build it (`ccs.datasets`,
`ccs.world`) and the experiments that use it (`ccs.pruning`, `ccs.evaluate`), so that data flows one
way: datasets -> evalset <- pruning.

- `EvalSet`: images and, per task, each image's class (zero-shot classification);
- `VideoSet`: clips, captions and the clip each caption describes (text <-> video retrieval), with
  the protocol that selected the captions and how much of the test split is there;
- `PROTOCOLS`: the two video-retrieval protocols (`check_protocol` says what each one means).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# The video-retrieval protocols. Both sample frames uniformly over the whole video, average the
# L2-normalised frame embeddings (mean pooling) and rank the whole test split, and rank video -> text
# as CLIP4Clip does (each video ranks the *videos* by the best score among each video's captions).
PROTOCOLS = {
    "paper": "the paper's code (avinashsai/CCS-CLIP): the first caption of each video, the mean of the "
    "normalised frame embeddings used as it is (not renormalised), the full test split",
    "clip4clip": "CLIP4Clip's evaluation: every caption of each video (MSVD: all of them; DiDeMo: all "
    "descriptions joined into one paragraph), the mean of the normalised frame embeddings "
    "renormalised, the full test split",
}


def check_protocol(protocol: str) -> str:
    """`protocol` if it is one of `PROTOCOLS`, else a ValueError that lists them."""
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"unknown video protocol {protocol!r}: use one of " + "; ".join(f"{k!r} ({v})" for k, v in PROTOCOLS.items())
        )
    return protocol


@dataclass
class EvalSet:
    """Images and, per task, each image's class (-1 where the task does not apply to it)."""

    name: str
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: dict[str, np.ndarray]


@dataclass
class VideoSet:
    """A video-retrieval test set as a protocol selects it. Unpacks as ``frames, captions,
    video_of_text`` (what `ccs.evaluate.retrieval_report` takes, with the embeddings)."""

    name: str
    frames: torch.Tensor  # uint8 [V, F, 3, H, W]
    captions: list[str]  # one row per caption
    video_of_text: np.ndarray  # int64 [len(captions)]: the video each caption describes
    protocol: str
    split_videos: int  # videos the test split lists
    missing: list[str] = field(default_factory=list)  # videos of the split not on disk (left out)
    subset: bool = False  # a random subset of the split was asked for

    def __iter__(self):
        return iter((self.frames, self.captions, self.video_of_text))

    @property
    def gallery(self) -> int:
        """The number of videos ranked (the candidates of a text -> video query)."""
        return int(self.frames.shape[0])

    @property
    def full(self) -> bool:
        """Whether every video of the test split is ranked: only then is R@K comparable with a
        published number on the same split."""
        return not self.subset and not self.missing and self.gallery == self.split_videos
