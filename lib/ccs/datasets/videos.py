"""The video-retrieval datasets (`load_video`): the test splits of MSR-VTT, MSVD and DiDeMo as their
files list them (video ids, video files, captions), the captions each protocol ranks, and the videos
a split names that are not on disk."""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ccs.datasets.frames import cached_frames
from ccs.datasets.reading import _parallel, _Refused, _subset, load_data_pickle
from ccs.datasets.registry import (
    DEFAULT_SIZE,
    DatasetError,
    DatasetNotFoundError,
    DatasetWarning,
    _fix,
    _found,
    _require,
    _Spec,
    spec,
)
from ccs.evalset import VideoSet, check_protocol

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".3gp", ".mpg", ".mpeg", ".wmv", ".flv")


@dataclass
class _Split:
    """A video dataset's test split as its files list it: video ids, their files (None: not on disk)
    and each video's captions in file order."""

    ids: list[str]
    files: list[Path | None]
    captions: list[list[str]]
    folder: Path


def _video_split(s: _Spec, base: Path) -> _Split:
    if s.name == "MSR-VTT":
        return _msrvtt(s, base)
    if s.name == "MSVD":
        return _msvd(s, base)
    return _didemo(s, base)


def _video_file(folder: Path, vid: str, files: dict | None = None) -> Path | None:
    """The file of video `vid` in `folder`: ``<vid>``, ``<vid>.<ext>`` or, for an id that ends in its
    own extension (DiDeMo's ``x.mov``), ``<stem>.<ext>``; `files` maps names to paths of a whole tree.
    None when there is none."""
    stem = vid.rsplit(".", 1)[0] if "." in vid else vid
    names = [vid, *(vid + e for e in VIDEO_EXTENSIONS), *(stem + e for e in VIDEO_EXTENSIONS)]
    for name in names:
        path = files.get(name) if files is not None else folder / name
        if path is not None and (files is not None or path.is_file()):
            return path
    return None


def _msrvtt(s: _Spec, base: Path) -> _Split:
    path = _found(base, s.needs[0])
    folder = _found(base, s.needs[1])
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"MSR-VTT: cannot read {path} ({e})") from None
    if not rows or not {"video_id", "sentence"} <= set(rows[0]):
        raise DatasetError(
            f"MSR-VTT: {path} needs the columns video_id and sentence (as CLIP4Clip's "
            f"MSRVTT_JSFUSION_test.csv); it has {', '.join(rows[0]) if rows else 'no rows'}"
        )
    by_video: dict[str, list[str]] = {}
    for r in rows:
        by_video.setdefault(r["video_id"].strip(), []).append(r["sentence"].strip())
    ids = list(by_video)
    return _Split(ids, [_video_file(folder, v) for v in ids], [by_video[v] for v in ids], folder)


def _msvd(s: _Spec, base: Path) -> _Split:
    split = _found(base, s.needs[0])
    caption_file = _found(base, s.needs[1])
    folder = _found(base, s.needs[2])
    ids = [line.strip() for line in split.read_text().splitlines() if line.strip()]
    by_video: dict[str, list[str]] = {}
    if caption_file.suffix == ".pkl":
        try:
            raw = load_data_pickle(caption_file)
            for vid, caps in raw.items():
                by_video[vid] = [" ".join(c) if isinstance(c, (list, tuple)) else str(c) for c in caps]
        except _Refused as e:
            raise DatasetError(
                f"MSVD: refused to load {caption_file}: {e}. It is not CLIP4Clip's raw-captions.pkl; delete it."
            ) from None
        except Exception as e:
            raise DatasetError(
                f"MSVD: cannot read {caption_file} as CLIP4Clip's raw-captions.pkl ({type(e).__name__}: {e})"
            ) from None
    else:
        for line in caption_file.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or " " not in line:
                continue
            vid, caption = line.split(" ", 1)
            by_video.setdefault(vid, []).append(caption.strip())
    missing = [v for v in ids if not by_video.get(v)]
    if missing:
        raise DatasetError(
            f"MSVD: {len(missing)} videos of {split} have no caption in {caption_file} "
            f"(e.g. {missing[0]!r}); the split and caption files do not belong together"
        )
    return _Split(ids, [_video_file(folder, v) for v in ids], [by_video[v] for v in ids], folder)


def _didemo(s: _Spec, base: Path) -> _Split:
    path = _found(base, s.needs[0])
    folder = _found(base, s.needs[1])
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(records, dict):
            records = list(records.values())
        pairs = [(r["video"], r["description"]) for r in records]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(
            f"DiDeMo: cannot read {path} as LocalizingMoments' test_data.json (a list of "
            f"records with video and description) ({type(e).__name__}: {e})"
        ) from None
    keep = None
    if (base / "didemo" / "test_list.txt").is_file():
        keep = {line.strip() for line in (base / "didemo" / "test_list.txt").read_text().splitlines() if line.strip()}
    descriptions: dict[str, list[str]] = {}
    for vid, desc in pairs:
        if keep is None or vid in keep:
            descriptions.setdefault(vid, []).append(str(desc).strip())
    files = {p.name: p for p in folder.rglob("*") if p.is_file()}
    ids = list(descriptions)
    return _Split(ids, [_video_file(folder, v, files) for v in ids], [descriptions[v] for v in ids], folder)


def _protocol_captions(s: _Spec, captions: list[str], protocol: str) -> list[str]:
    """The caption rows of one video under `protocol`: the paper's code ranks the first caption of each
    video; CLIP4Clip ranks every caption (MSR-VTT, MSVD) or DiDeMo's descriptions as one paragraph."""
    if protocol == "paper":
        return captions[:1]
    if s.name == "DiDeMo":
        return [" ".join(captions)]
    return list(captions)


def _missing_videos(s: _Spec, base: Path, split: _Split) -> list[str]:
    """The ids of the split's videos that are not on disk: an error for MSR-VTT (its 1k-A split is
    complete in every release), a `DatasetWarning` that counts them for MSVD and DiDeMo, which leave
    them out as CLIP4Clip does."""
    missing = [v for v, f in zip(split.ids, split.files) if f is None]
    if missing and (s.name == "MSR-VTT" or len(missing) == len(split.ids)):
        raise DatasetNotFoundError(
            f"{s.name}: {len(missing)} of the {len(split.ids)} videos of the test split are not in {split.folder} "
            f"(e.g. {missing[0]!r}; looked for <id>[.mp4|.avi|...]). {_fix(s, base)}"
        )
    if missing:
        warnings.warn(
            f"{s.name}: {len(missing)} of the {len(split.ids)} videos of the test split are not in "
            f"{split.folder} (e.g. {missing[0]!r}); they are left out, so {len(split.ids) - len(missing)} "
            "videos are ranked and R@K is not comparable with a full-split number",
            DatasetWarning,
            stacklevel=3,
        )
    return missing


def load_video(
    name: str,
    n: int | None = None,
    seed: int = 0,
    *,
    protocol: str = "paper",
    frames: int | None = None,
    size: int | None = None,
    progress: bool = False,
) -> VideoSet:
    """The test split of a video-retrieval dataset as `protocol` selects its captions: a `VideoSet`,
    which unpacks as ``frames, captions, video_of_text``.

    `frames` uint8 tensor [V, F, 3, size, size] (F: 12 for MSR-VTT and MSVD, 32 for DiDeMo, unless
    given; `size` default 224); `captions` list[str] with one row per caption; `video_of_text` int64
    [len(captions)]: the video each caption describes. `protocol` (`ccs.evalset.PROTOCOLS`): ``paper``
    ranks the first caption of each video, ``clip4clip`` every MSVD caption and DiDeMo's paragraph
    (both rank the whole split; the pooling differs in `ccs.evaluate.pool_frames`). `n` takes a
    reproducible random subset of the videos (by `seed`) with their captions; then the set is not the
    paper's gallery (`VideoSet.full` is False). Every video file of MSR-VTT's split must be there; MSVD
    and DiDeMo leave missing videos out with a `DatasetWarning` that counts them (checked before
    decoding anything). Decoded frames are cached on disk (`cached_frames`).
    """
    s = spec(name)
    if s.kind != "video":
        raise DatasetError(f"{s.name} is an image dataset: use load_classification({s.name!r})")
    try:
        check_protocol(protocol)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    frames = int(frames or s.frames)
    size = int(size or DEFAULT_SIZE)
    if frames < 1 or size < 1:
        raise DatasetError(f"frames and size must be at least 1 (got {frames}, {size})")
    base = _require(s)
    split = _video_split(s, base)
    if not split.ids:
        raise DatasetError(f"{s.name}: the test split at {base / s.folder} lists no videos")
    missing = _missing_videos(s, base, split)
    present = [i for i, f in enumerate(split.files) if f is not None]
    idx = [present[int(i)] for i in _subset(len(present), n, seed, s.name)]
    captions, vot = [], []
    for new, i in enumerate(idx):
        rows = _protocol_captions(s, split.captions[i], protocol)
        captions += rows
        vot += [new] * len(rows)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(idx), desc=s.name, unit="video", disable=not progress)

    def one(i):
        out = cached_frames(split.files[i], frames, size, s.folder)
        bar.update()
        return out

    try:
        stacked = np.stack(_parallel(one, idx, workers=min(4, os.cpu_count() or 1)))
    finally:
        bar.close()
    return VideoSet(
        s.name,
        torch.from_numpy(stacked),
        captions,
        np.asarray(vot, dtype=np.int64),
        protocol,
        split_videos=len(split.ids),
        missing=missing,
        subset=len(idx) < len(present),
    )
