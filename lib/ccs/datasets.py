"""The paper's datasets, read from their real on-disk formats under one data root.

Every dataset lives under ``root()``: ``$CCS_DATA``, else ``$XDG_DATA_HOME/ccs/data``, else
``~/.local/share/ccs/data``. Nothing here downloads behind your back: `load_classification` and
`load_video` only read, and fail at once (before any model is loaded) with a `DatasetNotFoundError`
or `DatasetError` that names the path and says what to do. ``ccs data`` lists what is present;
``ccs data fetch NAME`` downloads the datasets torchvision can download (`fetch`).

Expected layout under the root (``info(name)["layout"]`` says the same; ``a|b`` = either works):

==============  ==========================================================================================
CIFAR-10        ``cifar-10-batches-py/{test_batch,batches.meta}`` (python pickles; `ccs data fetch`)
CIFAR-100       ``cifar-100-python/{test,meta}`` (python pickles; `ccs data fetch`)
Food-101        ``food-101/meta/test.json`` + ``food-101/images/<class>/<id>.jpg`` (`ccs data fetch`)
Country-211     ``country211/test/<ISO code>/*.jpg`` (`ccs data fetch`)
Oxford-Pets     ``oxford-iiit-pet/annotations/test.txt`` + ``oxford-iiit-pet/images/*.jpg`` (`ccs data fetch`)
ImageNet-A      ``imagenet-a/<wnid>/*.jpg`` (the released imagenet-a.tar, 200 WordNet-id folders)
ImageNet-R      ``imagenet-r/<wnid>/*.jpg`` (the released imagenet-r.tar, 200 WordNet-id folders)
MSR-VTT         ``msrvtt/[msrvtt_data/]MSRVTT_JSFUSION_test.csv`` (columns ``video_id,sentence``; the 1k-A
                test split of CLIP4Clip's msrvtt_data.zip) + ``msrvtt/[MSRVTT/]videos/all/<video_id>.mp4``
MSVD            ``msvd/test_list.txt`` (one video id a line) + captions ``msvd/raw-captions.pkl`` (CLIP4Clip's
                msvd_data.zip) | ``msvd/AllVideoDescriptions.txt`` (``<video id> <caption>`` lines) +
                ``msvd/YouTubeClips/<video id>.avi``
DiDeMo          ``didemo/test_data.json`` (LocalizingMoments: records with ``video`` and ``description``),
                optionally ``didemo/test_list.txt`` (restricts the videos), + ``didemo/videos/**/<video>[.ext]``
==============  ==========================================================================================

Decisions worth knowing:

* CIFAR-10/100 are read from torchvision's pickle format by this module (same files, same keys,
  file names taken from torchvision's `CIFAR10`/`CIFAR100` class attributes), not through the
  torchvision classes: their ``_check_integrity`` insists on the md5 of all five *training* batches
  and of the test batch even for ``train=False``, so a test-only copy (or any small copy) is refused.
  Files are checked for structure (keys, shapes, label range) instead; the md5 of the download is
  checked by ``ccs data fetch`` (torchvision's own archive check).
* Food-101, Country-211 and Oxford-IIIT Pets load through torchvision's own dataset classes
  (``split="test"``). ImageNet-A/-R use their 200-class subsets as listed by timm
  (``timm/data/_info/imagenet_{a,r}_synsets.txt``), mapped to class names through timm's ImageNet-1k
  synset order (`timm.data.ImageNetInfo`) and open_clip's CLIP class names
  (`open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES`); labels index those 200 classes even when only
  some folders are present.
* Class names: CIFAR, Food-101 and Pets from the dataset itself (underscores to spaces), Country-211's
  ISO codes as English country names (babel's CLDR territory names). Prompt templates: ImageNet-A/-R
  use CLIP's 80 ImageNet templates (`open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES`); no
  installed package ships CLIP's per-dataset templates for the others, so they get the generic
  ``GENERIC_TEMPLATES`` ("a photo of a {}."), which can differ from the paper's prompts.
* Images are resized (shorter side, bicubic, antialiased) and centre-cropped to ``size`` (224), uint8.
* Videos are decoded with PyAV; ``frames`` frames (12 for MSR-VTT and MSVD, 32 for DiDeMo) are taken
  at the centres of equal segments of the video (a shorter video repeats frames). Decoded frames are
  cached in ``ccs.cache.cache_dir("frames", ...)`` keyed by file path, size, mtime, frame count and
  size, written atomically. DiDeMo follows CLIP4Clip: all descriptions of a video are joined into one
  paragraph caption. MSVD keeps each of its captions as its own row (`video_of_text` repeats).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch

DATA_ENV = "CCS_DATA"
DEFAULT_SIZE = 224
GENERIC_TEMPLATES = ("a photo of a {}.",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG", ".JPG", ".PNG")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".3gp", ".mpg", ".mpeg", ".wmv", ".flv")
_FRAMES_FORMAT = 1  # bump when the frame sampling or resizing changes: old cache entries are then unused


class DatasetError(ValueError):
    """A dataset on disk that cannot be read as expected (corrupt file, wrong format, bad request)."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset, or a file of it, that is not where `ccs.datasets` looks for it."""


class UnknownDatasetError(KeyError):
    """A dataset name that is not one of `names()`."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str  # "classification" | "video"
    folder: str  # under the root
    needs: tuple[tuple[str, ...], ...]  # required paths under the root; each a tuple of alternatives
    layout: str
    how: str  # where to get it (for datasets `ccs data fetch` cannot download)
    torchvision: str | None = None  # torchvision.datasets class that can download it
    frames: int | None = None


_CLIP4CLIP = "see the Data Preparation section of https://github.com/ArrowLuo/CLIP4Clip"
_SPECS = [
    _Spec("CIFAR-10", "classification", "cifar-10-batches-py",
          (("cifar-10-batches-py/test_batch",), ("cifar-10-batches-py/batches.meta",)),
          "cifar-10-batches-py/{test_batch,batches.meta}", "", "CIFAR10"),
    _Spec("CIFAR-100", "classification", "cifar-100-python",
          (("cifar-100-python/test",), ("cifar-100-python/meta",)),
          "cifar-100-python/{test,meta}", "", "CIFAR100"),
    _Spec("Food-101", "classification", "food-101",
          (("food-101/meta/test.json",), ("food-101/images",)),
          "food-101/meta/test.json + food-101/images/<class>/<id>.jpg", "", "Food101"),
    _Spec("Country-211", "classification", "country211", (("country211/test",),),
          "country211/test/<ISO country code>/*.jpg", "", "Country211"),
    _Spec("Oxford-Pets", "classification", "oxford-iiit-pet",
          (("oxford-iiit-pet/annotations/test.txt",), ("oxford-iiit-pet/images",)),
          "oxford-iiit-pet/annotations/test.txt + oxford-iiit-pet/images/*.jpg", "", "OxfordIIITPet"),
    _Spec("ImageNet-A", "classification", "imagenet-a", (("imagenet-a",),),
          "imagenet-a/<wnid>/*.jpg (200 WordNet-id folders)",
          "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar (see "
          "https://github.com/hendrycks/natural-adv-examples) and extract it into {root}"),
    _Spec("ImageNet-R", "classification", "imagenet-r", (("imagenet-r",),),
          "imagenet-r/<wnid>/*.jpg (200 WordNet-id folders)",
          "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar (see "
          "https://github.com/hendrycks/imagenet-r) and extract it into {root}"),
    _Spec("MSR-VTT", "video", "msrvtt",
          (("msrvtt/MSRVTT_JSFUSION_test.csv", "msrvtt/msrvtt_data/MSRVTT_JSFUSION_test.csv"),
           ("msrvtt/videos/all", "msrvtt/MSRVTT/videos/all")),
          "msrvtt/[msrvtt_data/]MSRVTT_JSFUSION_test.csv (video_id,sentence) + "
          "msrvtt/[MSRVTT/]videos/all/<video_id>.mp4",
          f"get the 1k-A test split file MSRVTT_JSFUSION_test.csv (in CLIP4Clip's msrvtt_data.zip; {_CLIP4CLIP}) "
          "and the MSR-VTT videos (e.g. the MSRVTT.zip of Frozen-in-Time, which extracts to MSRVTT/videos/all/), "
          "and put them at {root}/msrvtt/MSRVTT_JSFUSION_test.csv and {root}/msrvtt/videos/all/", frames=12),
    _Spec("MSVD", "video", "msvd",
          (("msvd/test_list.txt",), ("msvd/raw-captions.pkl", "msvd/AllVideoDescriptions.txt"),
           ("msvd/YouTubeClips",)),
          "msvd/test_list.txt + msvd/raw-captions.pkl|msvd/AllVideoDescriptions.txt + "
          "msvd/YouTubeClips/<video id>.avi",
          f"get test_list.txt and raw-captions.pkl (CLIP4Clip's msvd_data.zip; {_CLIP4CLIP}) and the videos "
          "(YouTubeClips.tar of the MSVD release, https://www.cs.utexas.edu/users/ml/clamp/videoDescription/), "
          "and put them at {root}/msvd/test_list.txt, {root}/msvd/raw-captions.pkl and {root}/msvd/YouTubeClips/",
          frames=12),
    _Spec("DiDeMo", "video", "didemo",
          (("didemo/test_data.json",), ("didemo/videos",)),
          "didemo/test_data.json [+ didemo/test_list.txt] + didemo/videos/**/<video>[.ext]",
          "get test_data.json from https://github.com/LisaAnne/LocalizingMoments (data/) and the videos with "
          f"that repository's download script ({_CLIP4CLIP}), and put them at "
          "{root}/didemo/test_data.json and {root}/didemo/videos/", frames=32),
]
_BY_KEY = {}
for _s in _SPECS:
    _BY_KEY["".join(ch for ch in _s.name.lower() if ch.isalnum())] = _s
for _alias, _target in {"pets": "Oxford-Pets", "oxfordiiitpet": "Oxford-Pets", "country211": "Country-211",
                        "food101": "Food-101"}.items():
    _BY_KEY.setdefault(_alias, next(s for s in _SPECS if s.name == _target))


# --------------------------------------------------------------------------------------- registry


def root() -> Path:
    """The data root: ``$CCS_DATA``, else ``$XDG_DATA_HOME/ccs/data``, else ``~/.local/share/ccs/data``
    (not created here)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "ccs" / "data"


def names() -> list[str]:
    """The paper's datasets: image classification first, then video retrieval."""
    return [s.name for s in _SPECS]


def spec(name: str) -> _Spec:
    """The entry of `name` (case and punctuation ignored: ``cifar10``, ``msr-vtt``)."""
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    if key in _BY_KEY:
        return _BY_KEY[key]
    raise UnknownDatasetError(f"Unknown dataset {name!r}. Known datasets: {', '.join(names())}. "
                              "Run `ccs data` for where each one goes.")


def _how(s: _Spec, base: Path) -> str:
    """How to get `s` into the root `base`."""
    if s.torchvision:
        return f"run `ccs data fetch {s.name}` on a machine with internet (torchvision downloads it into {base})"
    return s.how.format(root=base)


def _fix(s: _Spec, base: Path) -> str:
    """`_how` as a sentence."""
    how = _how(s, base)
    return how[0].upper() + how[1:] + "."


def _found(base: Path, alternatives: tuple[str, ...]) -> Path | None:
    for rel in alternatives:
        if (base / rel).exists():
            return base / rel
    return None


def info(name: str) -> dict:
    """What `ccs data` shows for one dataset: its kind, where it goes, whether it is present (every
    required file is there), what is missing, and how to get it. Never raises for a missing dataset."""
    s = spec(name)
    base = root()
    missing = [str(base / alts[0]) for alts in s.needs if _found(base, alts) is None]
    return {"name": s.name, "kind": s.kind, "path": str(base / s.folder), "present": not missing,
            "missing": missing, "layout": s.layout, "frames": s.frames,
            "fetch": f"ccs data fetch {s.name}" if s.torchvision else None, "how": _how(s, base)}


def _require(s: _Spec) -> Path:
    """The root, after checking that it and every required path of `s` exist (clear errors otherwise)."""
    base = root()
    if not base.is_dir():
        raise DatasetNotFoundError(
            f"The data root {base} does not exist (it is ${DATA_ENV}, or ~/.local/share/ccs/data when unset). "
            f"Create it and put the datasets there, or set {DATA_ENV} to where they are; `ccs data` lists the "
            f"expected layout. For {s.name}: {_how(s, base)}.")
    if not (base / s.folder).exists() and not any(_found(base, alts) for alts in s.needs):
        raise DatasetNotFoundError(
            f"{s.name} is not in the data root: {base / s.folder} does not exist. {_fix(s, base)}"
            f" Expected layout: {s.layout}.")
    for alts in s.needs:
        if _found(base, alts) is None:
            which = " or ".join(str(base / a) for a in alts)
            raise DatasetNotFoundError(
                f"{s.name} is incomplete: {which} is missing (expected layout under {base}: {s.layout}). "
                f"{_fix(s, base)}")
    return base


# ------------------------------------------------------------------------------------- images


def _resize_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> uint8 [..., 3, size, size]: shorter side to `size` (bicubic,
    antialiased), then the centre crop."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if x.shape[-2:] != (size, size):
        x = TF.resize(x, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x.contiguous()


def _pil_to_uint8(img, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return _resize_crop(TF.pil_to_tensor(img.convert("RGB")), size)


def _open_image(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return _pil_to_uint8(img, size)
    except OSError as e:
        raise DatasetError(f"Cannot read image {path} ({e}); the file is damaged: download the dataset "
                           "again or delete the file.") from None


def _subset(total: int, n: int | None, seed: int, what: str) -> np.ndarray:
    """Indices of a reproducible random subset of at most `n` of `total` items (sorted): all of them
    when `n` is None or not smaller than `total` (a page asks for n images; a small copy has fewer)."""
    if n is not None and n < 1:
        raise DatasetError(f"n must be at least 1 (got {n})")
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def _parallel(fn: Callable, items, workers: int | None = None) -> list:
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _clean(name: str) -> str:
    return name.replace("_", " ").strip()


def _unpickle(path: Path, s: _Spec) -> dict:
    try:
        with open(path, "rb") as f:
            out = pickle.load(f, encoding="latin1")
    except Exception as e:  # truncated, not a pickle, ...
        raise DatasetError(f"{s.name}: cannot read {path} as a CIFAR python pickle ({type(e).__name__}: {e}); "
                           f"the file is damaged. {_fix(s, root())}") from None
    if not isinstance(out, dict):
        raise DatasetError(f"{s.name}: {path} is not a CIFAR python pickle (no dict inside)")
    return out


def _cifar(s: _Spec, base: Path, idx_of: Callable, size: int):
    from torchvision import datasets as tvd

    cls = getattr(tvd, s.torchvision)
    folder = base / cls.base_folder
    batch = _unpickle(folder / cls.test_list[0][0], s)
    meta = _unpickle(folder / cls.meta["filename"], s)
    classes = meta.get(cls.meta["key"])
    data = batch.get("data")
    labels = batch.get("labels", batch.get("fine_labels"))
    if classes is None or data is None or labels is None:
        raise DatasetError(f"{s.name}: {folder} has pickles without the expected keys (data, labels, "
                           f"{cls.meta['key']}); the files are damaged. {_fix(s, base)}")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetError(f"{s.name}: {folder / cls.test_list[0][0]} holds data of shape {data.shape} "
                           f"({data.dtype}) for {len(labels)} labels, not uint8 [N, 3072]; the file is damaged.")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f"{s.name}: labels outside the {len(classes)} classes in {folder}")
    idx = idx_of(len(labels))
    images = torch.from_numpy(data[idx].reshape(-1, 3, 32, 32))
    return _resize_crop(images, size), labels[idx], [_clean(c) for c in classes]


def _torchvision(s: _Spec, base: Path, idx_of: Callable, size: int):
    """Food-101, Country-211, Oxford-IIIT Pets through torchvision's classes (split "test")."""
    from torchvision import datasets as tvd

    cls = getattr(tvd, s.torchvision)
    try:
        ds = cls(str(base), split="test", download=False)
    except (RuntimeError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise DatasetError(f"{s.name}: torchvision cannot read {base / s.folder} ({type(e).__name__}: {e}). "
                           f"Expected layout: {s.layout}. {_fix(s, base)}") from None
    paths = getattr(ds, "_image_files", None) or getattr(ds, "_images", None) or [p for p, _ in getattr(ds, "samples", [])]
    idx = idx_of(len(ds))

    def one(i):
        try:
            img, label = ds[int(i)]
        except OSError as e:
            where = paths[i] if i < len(paths) else f"item {i} of {base / s.folder}"
            raise DatasetError(f"{s.name}: cannot read image {where} ({e}); the file is damaged: download "
                               "the dataset again or delete the file.") from None
        return _pil_to_uint8(img, size), label

    out = _parallel(one, list(idx))
    classes = list(ds.classes)
    if s.name == "Country-211":
        classes = [_country(c) for c in classes]
    labels = np.asarray([lab for _, lab in out], dtype=np.int64)
    if len(labels) and labels.max() >= len(classes):
        raise DatasetError(f"{s.name}: {base / s.folder} has labels beyond its {len(classes)} classes "
                           "(a partial copy of the split?)")
    images = torch.stack([im for im, _ in out]) if out else torch.empty(0, 3, size, size, dtype=torch.uint8)
    return images, labels, [_clean(c) for c in classes]


@cache
def _countries() -> dict:
    from babel import Locale

    return dict(Locale("en").territories)


def _country(code: str) -> str:
    """English name of an ISO 3166 country code (as babel's CLDR data has it), else the code."""
    return _countries().get(code.upper(), code)


@cache
def _imagenet_subset(which: str) -> tuple[list[str], list[str]]:
    """(wnids, CLIP class names) of the 200-class ImageNet-A or ImageNet-R subset, from timm's lists."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    wnids = (resources.files("timm.data") / "_info" / f"imagenet_{which}_synsets.txt").read_text().split()
    index = {w: i for i, w in enumerate(ImageNetInfo("imagenet-1k").label_names())}
    return wnids, [IMAGENET_CLASSNAMES[index[w]] for w in wnids]


def _imagenet_shift(s: _Spec, base: Path, idx_of: Callable, size: int):
    folder = base / s.folder
    wnids, classes = _imagenet_subset(s.folder.split("-")[1])
    label_of = {w: i for i, w in enumerate(wnids)}
    present = sorted(p for p in folder.iterdir() if p.is_dir())
    stray = [p.name for p in present if p.name not in label_of]
    if stray:
        raise DatasetError(f"{s.name}: {folder} has folders that are not classes of {s.name}: "
                           f"{', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''}. Expected layout: {s.layout}.")
    samples = [(f, label_of[d.name]) for d in present for f in sorted(d.iterdir())
               if f.is_file() and f.suffix in IMAGE_EXTENSIONS]
    if not samples:
        raise DatasetNotFoundError(f"{s.name}: no images in {folder} (expected layout: {s.layout}). "
                                   f"{_fix(s, base)}")
    idx = idx_of(len(samples))
    images = torch.stack(_parallel(lambda i: _open_image(samples[i][0], size), list(idx)))
    return images, np.asarray([samples[i][1] for i in idx], dtype=np.int64), list(classes)


def load_classification(name: str, n: int | None = None, seed: int = 0, size: int | None = None):
    """The test split of an image-classification dataset: ``(EvalSet, classnames, templates)``.

    The `EvalSet` (ccs.pruning) is named after the dataset and has one task, also named after it;
    images are uint8 [N, 3, size, size] (`size` default 224), resized and centre-cropped; labels index
    `classnames`. `n` takes a reproducible random subset (by `seed`; in disk order). Missing data
    raises `DatasetNotFoundError`, unreadable data `DatasetError`, both before any image is decoded
    where possible.
    """
    from ccs.pruning import EvalSet

    s = spec(name)
    if s.kind != "classification":
        raise DatasetError(f"{s.name} is a video dataset: use load_video({s.name!r})")
    size = int(size or DEFAULT_SIZE)
    if size < 1:
        raise DatasetError(f"size must be at least 1 (got {size})")
    base = _require(s)

    def idx_of(total):
        return _subset(total, n, seed, s.name)

    if s.name.startswith("CIFAR"):
        images, labels, classes = _cifar(s, base, idx_of, size)
    elif s.name.startswith("ImageNet"):
        images, labels, classes = _imagenet_shift(s, base, idx_of, size)
    else:
        images, labels, classes = _torchvision(s, base, idx_of, size)
    if s.name.startswith("ImageNet"):
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
        templates = [t("{}") if callable(t) else t for t in OPENAI_IMAGENET_TEMPLATES]
    else:
        templates = list(GENERIC_TEMPLATES)
    return EvalSet(s.name, images, {s.name: labels}), classes, templates


# ------------------------------------------------------------------------------------- videos


def _video_index(s: _Spec, base: Path) -> tuple[list[Path], list[str], list[int]]:
    """(video files, captions, video of each caption) of a video dataset's test split."""
    if s.name == "MSR-VTT":
        return _msrvtt(s, base)
    if s.name == "MSVD":
        return _msvd(s, base)
    return _didemo(s, base)


def _video_file(s: _Spec, base: Path, folder: Path, vid: str, files: dict | None = None) -> Path:
    """The file of video `vid` in `folder`: ``<vid>``, ``<vid>.<ext>`` or, for an id that ends in its
    own extension (DiDeMo's ``x.mov``), ``<stem>.<ext>``; `files` maps names to paths of a whole tree."""
    stem = vid.rsplit(".", 1)[0] if "." in vid else vid
    names = [vid, *(vid + e for e in VIDEO_EXTENSIONS), *(stem + e for e in VIDEO_EXTENSIONS)]
    for name in names:
        path = files.get(name) if files is not None else folder / name
        if path is not None and (files is not None or path.is_file()):
            return path
    raise DatasetNotFoundError(f"{s.name}: the video {vid!r} of the test split is not in {folder} (looked for "
                               f"{vid}[.mp4|.avi|...]). {_fix(s, base)}")


def _msrvtt(s: _Spec, base: Path):
    path = _found(base, s.needs[0])
    folder = _found(base, s.needs[1])
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"MSR-VTT: cannot read {path} ({e})") from None
    if not rows or not {"video_id", "sentence"} <= set(rows[0]):
        raise DatasetError(f"MSR-VTT: {path} needs the columns video_id and sentence (as CLIP4Clip's "
                           f"MSRVTT_JSFUSION_test.csv); it has {', '.join(rows[0]) if rows else 'no rows'}")
    order, captions, vot = {}, [], []
    for r in rows:
        vid = r["video_id"].strip()
        order.setdefault(vid, len(order))
        captions.append(r["sentence"].strip())
        vot.append(order[vid])
    return [_video_file(s, base, folder, v) for v in order], captions, vot


def _msvd(s: _Spec, base: Path):
    split = _found(base, s.needs[0])
    caption_file = _found(base, s.needs[1])
    folder = _found(base, s.needs[2])
    vids = [line.strip() for line in split.read_text().splitlines() if line.strip()]
    by_video: dict[str, list[str]] = {}
    if caption_file.suffix == ".pkl":
        try:
            with open(caption_file, "rb") as f:
                raw = pickle.load(f)
            for vid, caps in raw.items():
                by_video[vid] = [" ".join(c) if isinstance(c, (list, tuple)) else str(c) for c in caps]
        except Exception as e:
            raise DatasetError(f"MSVD: cannot read {caption_file} as CLIP4Clip's raw-captions.pkl "
                               f"({type(e).__name__}: {e})") from None
    else:
        for line in caption_file.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or " " not in line:
                continue
            vid, caption = line.split(" ", 1)
            by_video.setdefault(vid, []).append(caption.strip())
    missing = [v for v in vids if not by_video.get(v)]
    if missing:
        raise DatasetError(f"MSVD: {len(missing)} videos of {split} have no caption in {caption_file} "
                           f"(e.g. {missing[0]!r}); the split and caption files do not belong together")
    captions, vot = [], []
    for i, v in enumerate(vids):
        captions += by_video[v]
        vot += [i] * len(by_video[v])
    return [_video_file(s, base, folder, v) for v in vids], captions, vot


def _didemo(s: _Spec, base: Path):
    path = _found(base, s.needs[0])
    folder = _found(base, s.needs[1])
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(records, dict):
            records = list(records.values())
        pairs = [(r["video"], r["description"]) for r in records]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"DiDeMo: cannot read {path} as LocalizingMoments' test_data.json (a list of "
                           f"records with video and description) ({type(e).__name__}: {e})") from None
    keep = None
    if (base / "didemo" / "test_list.txt").is_file():
        keep = {line.strip() for line in (base / "didemo" / "test_list.txt").read_text().splitlines() if line.strip()}
    paragraphs: dict[str, list[str]] = {}
    for vid, desc in pairs:
        if keep is None or vid in keep:
            paragraphs.setdefault(vid, []).append(str(desc).strip())
    files = {p.name: p for p in folder.rglob("*") if p.is_file()}
    vids = list(paragraphs)
    return ([_video_file(s, base, folder, v, files) for v in vids], [" ".join(paragraphs[v]) for v in vids],
            list(range(len(vids))))


def _corrupt(path: Path, why: str) -> DatasetError:
    return DatasetError(f"Cannot decode the video {path} ({why}); the file is damaged or not a video: "
                        "download the dataset's videos again.")


def decode_frames(path: Path, frames: int, size: int) -> np.ndarray:
    """`frames` frames of a video, uint8 [frames, 3, size, size]: the frames at the centres of
    `frames` equal segments of its frame sequence, resized and centre-cropped (no caching)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _corrupt(path, "no video stream")
            stream = container.streams.video[0]
            total = int(stream.frames or 0)
            if total <= 0:  # no count in the header: count the packets (cheap: no decoding)
                total = sum(1 for p in container.demux(stream) if p.size)
                container.seek(0)
        if total <= 0:
            raise _corrupt(path, "no frames")
        wanted = np.minimum(((np.arange(frames) + 0.5) * total / frames).astype(int), total - 1).tolist()

        def convert(frame) -> torch.Tensor:
            return _resize_crop(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1), size)

        picked: dict[int, torch.Tensor] = {}
        last, last_i = None, -1
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            targets = set(wanted)
            for last_i, last in enumerate(container.decode(stream)):
                if last_i in targets:
                    picked[last_i] = convert(last)
                if last_i >= wanted[-1]:
                    break
            if last is None:
                raise _corrupt(path, "no frame could be decoded")
            if last_i not in picked:  # fewer frames than the header said: the last one stands in
                picked[last_i] = convert(last)
    except DatasetError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError, RuntimeError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    got = sorted(picked)
    return torch.stack([picked[max((k for k in got if k <= w), default=got[0])] for w in wanted]).numpy()


def _frames_key(path: Path, frames: int, size: int) -> str:
    st = path.stat()
    text = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, frames, size, _FRAMES_FORMAT])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_frames(path: Path, frames: int, size: int, folder: str = "video") -> np.ndarray:
    """`decode_frames`, cached on disk under ``cache_dir("frames", folder)`` by the file's path, size
    and mtime, the frame count and the size; written atomically. A damaged entry is decoded again."""
    from ccs.cache import CacheWarning, cache_dir

    path = Path(path)
    target = cache_dir("frames", folder) / f"{_frames_key(path, frames, size)}.npy"
    if target.is_file():
        try:
            out = np.load(target, allow_pickle=False)
            if out.shape == (frames, 3, size, size) and out.dtype == np.uint8:
                return out
        except (OSError, ValueError, EOFError):
            pass
        warnings.warn(f"damaged frame cache entry {target} for {path}: decoding again", CacheWarning, stacklevel=2)
    out = decode_frames(path, frames, size)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, out, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def load_video(name: str, n: int | None = None, seed: int = 0, *, frames: int | None = None,
               size: int | None = None, progress: bool = False):
    """The test split of a video-retrieval dataset: ``(frames, captions, video_of_text)``.

    `frames` uint8 tensor [N, F, 3, size, size] (F: 12 for MSR-VTT and MSVD, 32 for DiDeMo, unless
    given; `size` default 224); `captions` list[str] with one row per caption; `video_of_text` int64
    array [len(captions)]: the video each caption describes (MSVD has several captions a video).
    `n` takes a reproducible random subset of the videos (by `seed`) with all their captions. Every
    video file of the split must be there (checked before decoding anything). Decoded frames are
    cached on disk (`cached_frames`).
    """
    s = spec(name)
    if s.kind != "video":
        raise DatasetError(f"{s.name} is an image dataset: use load_classification({s.name!r})")
    frames = int(frames or s.frames)
    size = int(size or DEFAULT_SIZE)
    if frames < 1 or size < 1:
        raise DatasetError(f"frames and size must be at least 1 (got {frames}, {size})")
    base = _require(s)
    videos, captions, vot = _video_index(s, base)
    if not videos:
        raise DatasetError(f"{s.name}: the test split at {base / s.folder} lists no videos")
    idx = _subset(len(videos), n, seed, s.name)
    new_of_old = {int(old): new for new, old in enumerate(idx)}
    rows = [j for j, v in enumerate(vot) if v in new_of_old]

    from tqdm.auto import tqdm

    bar = tqdm(total=len(idx), desc=s.name, unit="video", disable=not progress)

    def one(i):
        out = cached_frames(videos[i], frames, size, s.folder)
        bar.update()
        return out

    try:
        stacked = np.stack(_parallel(one, [int(i) for i in idx], workers=min(4, os.cpu_count() or 1)))
    finally:
        bar.close()
    return (torch.from_numpy(stacked), [captions[j] for j in rows],
            np.asarray([new_of_old[vot[j]] for j in rows], dtype=np.int64))


# ------------------------------------------------------------------------------------- fetch


def fetch(name: str, timeout: float = 5.0) -> Path:
    """Download a dataset that torchvision can download (its test split, into the root; needs the
    network, which is checked first so that an offline machine fails within `timeout` seconds).
    Others raise `DatasetError` saying where to get them and where to put them."""
    import socket
    from urllib.parse import urlparse

    from torchvision import datasets as tvd

    s = spec(name)
    base = root()
    if not s.torchvision:
        raise DatasetError(f"{s.name} cannot be downloaded by `ccs data fetch`: {s.how.format(root=base)} "
                           f"(expected layout: {s.layout}).")
    cls = getattr(tvd, s.torchvision)
    url = getattr(cls, "url", None) or getattr(cls, "_URL", None) or cls._RESOURCES[0][0]
    host = urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        raise DatasetError(f"Cannot reach {host} to download {s.name} ({e}). On a machine with internet run "
                           f"`ccs data fetch {s.name}`, or download {url} by hand and extract it into {base} "
                           f"(expected layout: {s.layout}).") from None
    base.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        if s.name.startswith("CIFAR"):
            cls(str(base), train=False, download=True)
        else:
            cls(str(base), split="test", download=True)
    finally:
        socket.setdefaulttimeout(old)
    return base / s.folder
