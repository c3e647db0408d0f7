"""The paper's datasets, read from their real on-disk formats under one data root, with the prompts,
class names and video protocol of the paper and of the CLIP ecosystem.

Every dataset lives under ``root()``: ``$CCS_DATA``, else ``$XDG_DATA_HOME/ccs/data``, else
``~/.local/share/ccs/data``. Nothing here downloads behind your back: `load_classification` and
`load_video` only read, and fail at once (before any model is loaded) with a `DatasetNotFoundError`
or `DatasetError` that names the path and says what to do. ``ccs data`` lists what is present,
``ccs data --check`` opens every file a present dataset lists (`check`); ``ccs data fetch NAME``
downloads the datasets torchvision can download (`fetch`).

Expected layout under the root (``info(name)["layout"]`` says the same; ``a|b`` = either works):

=================  =======================================================================================
CIFAR-10           ``cifar-10-batches-py/{test_batch,batches.meta}`` (python pickles; `ccs data fetch`)
CIFAR-100          ``cifar-100-python/{test,meta}`` (python pickles; `ccs data fetch`)
Food-101           ``food-101/meta/test.json`` + ``food-101/images/<class>/<id>.jpg`` (`ccs data fetch`)
Country-211        ``country211/test/<ISO code>/*.jpg`` (`ccs data fetch`)
Oxford-Pets        ``oxford-iiit-pet/annotations/test.txt`` + ``oxford-iiit-pet/images/*.jpg`` (`ccs data fetch`)
Oxford-Pets-paper  ``oxford-iiit-pet/images/*.jpg`` (the same download; every image, see below)
ImageNet-A         ``imagenet-a/<wnid>/*.jpg`` (the released imagenet-a.tar, 200 WordNet-id folders)
ImageNet-R         ``imagenet-r/<wnid>/*.jpg`` (the released imagenet-r.tar, 200 WordNet-id folders)
MSR-VTT            ``msrvtt/[msrvtt_data/]MSRVTT_JSFUSION_test.csv`` (columns ``video_id,sentence``; the 1k-A
                   test split of CLIP4Clip's msrvtt_data.zip) + ``msrvtt/[MSRVTT/]videos/all/<video_id>.mp4``
MSVD               ``msvd/test_list.txt`` (one video id a line) + captions ``msvd/raw-captions.pkl`` (CLIP4Clip's
                   msvd_data.zip) | ``msvd/AllVideoDescriptions.txt`` (``<video id> <caption>`` lines) +
                   ``msvd/YouTubeClips/<video id>.avi``
DiDeMo             ``didemo/test_data.json`` (LocalizingMoments: records with ``video`` and ``description``),
                   optionally ``didemo/test_list.txt`` (restricts the videos), + ``didemo/videos/**/<video>[.ext]``
=================  =======================================================================================

The evaluation protocol (what makes a run's "original" number the one the paper and the ecosystem get):

* **Prompts and class names** are CLIP's, as the `clip-benchmark` package ships them
  (``en_zeroshot_classification_templates.json`` and ``en_classnames.json``, copied into
  ``ccs/data/clip_benchmark_*.json`` with their licence; `templates`, `classnames`): 18 templates for
  CIFAR-10/100, "a photo of {}, a type of food." for Food-101, five for Country-211, "a photo of a {},
  a type of pet." for Oxford-Pets; CLIP's country names for Country-211's ISO codes (`COUNTRY211_CODES`,
  the folders in order); CLIP's 37 pet breeds. The paper's code uses the same templates (its CIFAR-10
  ones serve its Pets too) and class names, except 20 of Country-211's, which it writes in ISO style
  ("Viet Nam", "Russian Federation", "Taiwan, Province of China", a garbled "RÃ©union", ...; its
  ``labels.py``): here they are CLIP's. CIFAR and Food-101 names come from the data (underscores to spaces, as
  CLIP's and the paper's lists have them; clip-benchmark passes CIFAR-100's raw names, e.g.
  "aquarium_fish"). ImageNet-A/-R use CLIP's 80 ImageNet templates and class names
  (`open_clip.zero_shot_metadata`), on their 200-class subsets as timm lists them
  (``timm/data/_info/imagenet_{a,r}_synsets.txt``).
* **Oxford-Pets in two forms.** ``Oxford-Pets`` (``pets``) is the benchmark: torchvision's 37-class test
  split. ``Oxford-Pets-paper`` (``pets-paper``) is what the paper's code measured (its
  ``load_image_data.py``): *every* image in ``images/`` (trainval and test, 7,390), labelled by the first
  token of the file name, which merges breeds (``american_bulldog`` and ``american_pit_bull_terrier`` are
  both "american": 35 classes named by those tokens), with the 18 CIFAR templates. The paper's Pets
  numbers are this set's, and they are far below CLIP's published Pets accuracy.
* **Classification labels** index the dataset's whole class list even when only part of it is on disk
  (Country-211, Pets, ImageNet-A/-R), so a partial copy is still the 211-, 37- or 200-way task.
* **Images** are resized and cropped exactly as open_clip's preprocessing does (PIL: shorter side to
  ``size``, bicubic, then the centre crop, then RGB), kept as uint8; `ccs.models.tensor_preprocess` then
  gives the same tensors as open_clip's ``preprocess`` (tests/test_protocol.py checks this against
  clip-benchmark's own evaluation).
* **Videos** (`load_video`) are decoded with PyAV; ``frames`` frames (12 for MSR-VTT and MSVD, 32 for
  DiDeMo) are taken at the centres of equal segments of the whole video (as the paper's uniform
  sampling; a shorter video repeats frames), resized and centre-cropped on tensors. Decoded frames are
  cached in ``ccs.cache.cache_dir("frames", ...)`` keyed by file path, size, mtime, frame count and size,
  written atomically. The captions depend on the ``protocol`` (`ccs.evalset.PROTOCOLS`): ``paper`` (the
  paper's code: the first caption of each video) or ``clip4clip`` (every MSVD caption as its own row;
  DiDeMo's descriptions of a video joined into one paragraph). MSR-VTT 1k-A has one caption a video, so
  only the pooling differs there (`ccs.evaluate.pool_frames`). A video of the MSVD or DiDeMo split that is
  not on disk is left out with a `DatasetWarning` that counts them (as CLIP4Clip does); MSR-VTT's must
  all be there. The returned `VideoSet` says whether the whole split is ranked (`VideoSet.full`): only
  then is its R@K comparable with a published one.
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

from ccs.evalset import EvalSet, VideoSet, check_protocol

DATA_ENV = "CCS_DATA"
DEFAULT_SIZE = 224
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG", ".JPG", ".PNG")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".3gp", ".mpg", ".mpeg", ".wmv", ".flv")
_FRAMES_FORMAT = 1  # bump when the frame sampling or resizing changes: old cache entries are then unused

# Country-211's 211 folders (ISO 3166 codes, as torchvision's Country211 sorts them); clip-benchmark's
# country211 class names are in this order.
COUNTRY211_CODES = tuple(
    """
AD AE AF AG AI AL AM AO AQ AR AT AU AW AX AZ BA BB BD BE BF BG BH BJ BM BN BO BQ BR BS BT BW BY BZ CA CD CF CH CI
CK CL CM CN CO CR CU CV CW CY CZ DE DK DM DO DZ EC EE EG ES ET FI FJ FK FO FR GA GB GD GE GF GG GH GI GL GM GP GR
GS GT GU GY HK HN HR HT HU ID IE IL IM IN IQ IR IS IT JE JM JO JP KE KG KH KN KP KR KW KY KZ LA LB LC LI LK LR LT
LU LV LY MA MC MD ME MF MG MK ML MM MN MO MQ MR MT MU MV MW MX MY MZ NA NC NG NI NL NO NP NZ OM PA PE PF PG PH PK
PL PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SS SV SX SY SZ TG TH TJ TL TM TN TO
TR TT TW TZ UA UG US UY UZ VA VE VG VI VN VU WS XK YE ZA ZM ZW""".split()
)
# The paper's Oxford-Pets classes (avinashsai/CCS-CLIP, src/labels.py get_oxfordpets_labels): the first
# token of the image file names, in the paper's order (dogs, then cats).
PETS_PAPER_CLASSES = (
    "american",
    "basset",
    "beagle",
    "boxer",
    "chihuahua",
    "english",
    "german",
    "great",
    "havanese",
    "japanese",
    "keeshond",
    "leonberger",
    "miniature",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint",
    "samoyed",
    "scottish",
    "shiba",
    "staffordshire",
    "wheaten",
    "yorkshire",
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British",
    "Egyptian",
    "Maine",
    "Persian",
    "Ragdoll",
    "Russian",
    "Siamese",
    "Sphynx",
)


class DatasetError(ValueError):
    """A dataset on disk that cannot be read as expected (corrupt file, wrong format, bad request)."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset, or a file of it, that is not where `ccs.datasets` looks for it."""


class DatasetWarning(UserWarning):
    """Part of a dataset is left out (e.g. videos of a split that are not on disk)."""


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
    prompts: str | None = None  # clip-benchmark's key of its templates (None: CLIP's ImageNet templates)
    split_videos: int | None = None  # videos of the standard test split (the paper's gallery)


_CLIP4CLIP = "see the Data Preparation section of https://github.com/ArrowLuo/CLIP4Clip"
_SPECS = [
    _Spec(
        "CIFAR-10",
        "classification",
        "cifar-10-batches-py",
        (("cifar-10-batches-py/test_batch",), ("cifar-10-batches-py/batches.meta",)),
        "cifar-10-batches-py/{test_batch,batches.meta}",
        "",
        "CIFAR10",
        prompts="cifar10",
    ),
    _Spec(
        "CIFAR-100",
        "classification",
        "cifar-100-python",
        (("cifar-100-python/test",), ("cifar-100-python/meta",)),
        "cifar-100-python/{test,meta}",
        "",
        "CIFAR100",
        prompts="cifar100",
    ),
    _Spec(
        "Food-101",
        "classification",
        "food-101",
        (("food-101/meta/test.json",), ("food-101/images",)),
        "food-101/meta/test.json + food-101/images/<class>/<id>.jpg",
        "",
        "Food101",
        prompts="food101",
    ),
    _Spec(
        "Country-211",
        "classification",
        "country211",
        (("country211/test",),),
        "country211/test/<ISO country code>/*.jpg",
        "",
        "Country211",
        prompts="country211",
    ),
    _Spec(
        "Oxford-Pets",
        "classification",
        "oxford-iiit-pet",
        (("oxford-iiit-pet/annotations/test.txt",), ("oxford-iiit-pet/images",)),
        "oxford-iiit-pet/annotations/test.txt + oxford-iiit-pet/images/*.jpg",
        "",
        "OxfordIIITPet",
        prompts="pets",
    ),
    _Spec(
        "Oxford-Pets-paper",
        "classification",
        "oxford-iiit-pet",
        (("oxford-iiit-pet/images",),),
        "oxford-iiit-pet/images/*.jpg (every image: the paper's listing)",
        "",
        "OxfordIIITPet",
        prompts="cifar10",
    ),
    _Spec(
        "ImageNet-A",
        "classification",
        "imagenet-a",
        (("imagenet-a",),),
        "imagenet-a/<wnid>/*.jpg (200 WordNet-id folders)",
        "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar (see "
        "https://github.com/hendrycks/natural-adv-examples) and extract it into {root}",
    ),
    _Spec(
        "ImageNet-R",
        "classification",
        "imagenet-r",
        (("imagenet-r",),),
        "imagenet-r/<wnid>/*.jpg (200 WordNet-id folders)",
        "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar (see "
        "https://github.com/hendrycks/imagenet-r) and extract it into {root}",
    ),
    _Spec(
        "MSR-VTT",
        "video",
        "msrvtt",
        (
            ("msrvtt/MSRVTT_JSFUSION_test.csv", "msrvtt/msrvtt_data/MSRVTT_JSFUSION_test.csv"),
            ("msrvtt/videos/all", "msrvtt/MSRVTT/videos/all"),
        ),
        "msrvtt/[msrvtt_data/]MSRVTT_JSFUSION_test.csv (video_id,sentence) + msrvtt/[MSRVTT/]videos/all/<video_id>.mp4",
        f"get the 1k-A test split file MSRVTT_JSFUSION_test.csv (in CLIP4Clip's msrvtt_data.zip; {_CLIP4CLIP}) "
        "and the MSR-VTT videos (e.g. the MSRVTT.zip of Frozen-in-Time, which extracts to MSRVTT/videos/all/), "
        "and put them at {root}/msrvtt/MSRVTT_JSFUSION_test.csv and {root}/msrvtt/videos/all/",
        frames=12,
        split_videos=1000,
    ),
    _Spec(
        "MSVD",
        "video",
        "msvd",
        (("msvd/test_list.txt",), ("msvd/raw-captions.pkl", "msvd/AllVideoDescriptions.txt"), ("msvd/YouTubeClips",)),
        "msvd/test_list.txt + msvd/raw-captions.pkl|msvd/AllVideoDescriptions.txt + msvd/YouTubeClips/<video id>.avi",
        f"get test_list.txt and raw-captions.pkl (CLIP4Clip's msvd_data.zip; {_CLIP4CLIP}) and the videos "
        "(YouTubeClips.tar of the MSVD release, https://www.cs.utexas.edu/users/ml/clamp/videoDescription/), "
        "and put them at {root}/msvd/test_list.txt, {root}/msvd/raw-captions.pkl and {root}/msvd/YouTubeClips/",
        frames=12,
        split_videos=670,
    ),
    _Spec(
        "DiDeMo",
        "video",
        "didemo",
        (("didemo/test_data.json",), ("didemo/videos",)),
        "didemo/test_data.json [+ didemo/test_list.txt] + didemo/videos/**/<video>[.ext]",
        "get test_data.json from https://github.com/LisaAnne/LocalizingMoments (data/) and the videos with "
        f"that repository's download script ({_CLIP4CLIP}), and put them at "
        "{root}/didemo/test_data.json and {root}/didemo/videos/",
        frames=32,
        split_videos=1004,
    ),
]
_BY_KEY = {}
for _s in _SPECS:
    _BY_KEY["".join(ch for ch in _s.name.lower() if ch.isalnum())] = _s
for _alias, _target in {
    "pets": "Oxford-Pets",
    "oxfordiiitpet": "Oxford-Pets",
    "country211": "Country-211",
    "food101": "Food-101",
    "petspaper": "Oxford-Pets-paper",
    "oxfordiiitpetpaper": "Oxford-Pets-paper",
}.items():
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
    raise UnknownDatasetError(
        f"Unknown dataset {name!r}. Known datasets: {', '.join(names())}. Run `ccs data` for where each one goes."
    )


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
    return {
        "name": s.name,
        "kind": s.kind,
        "path": str(base / s.folder),
        "present": not missing,
        "missing": missing,
        "layout": s.layout,
        "frames": s.frames,
        "fetch": f"ccs data fetch {s.name}" if s.torchvision else None,
        "how": _how(s, base),
    }


def _require(s: _Spec) -> Path:
    """The root, after checking that it and every required path of `s` exist (clear errors otherwise)."""
    base = root()
    if not base.is_dir():
        raise DatasetNotFoundError(
            f"The data root {base} does not exist (it is ${DATA_ENV}, or ~/.local/share/ccs/data when unset). "
            f"Create it and put the datasets there, or set {DATA_ENV} to where they are; `ccs data` lists the "
            f"expected layout. For {s.name}: {_how(s, base)}."
        )
    if not (base / s.folder).exists() and not any(_found(base, alts) for alts in s.needs):
        raise DatasetNotFoundError(
            f"{s.name} is not in the data root: {base / s.folder} does not exist. {_fix(s, base)} Expected layout: {s.layout}."
        )
    for alts in s.needs:
        if _found(base, alts) is None:
            which = " or ".join(str(base / a) for a in alts)
            raise DatasetNotFoundError(
                f"{s.name} is incomplete: {which} is missing (expected layout under {base}: {s.layout}). {_fix(s, base)}"
            )
    return base


# ---------------------------------------------------------------------------- prompts and names


@cache
def _clip_benchmark(which: str) -> dict:
    """clip-benchmark's ``en_<which>.json`` (a copy in ccs/data, see clip_benchmark_LICENSE.txt)."""
    path = resources.files("ccs") / "data" / f"clip_benchmark_en_{which}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def templates(name: str) -> list[str]:
    """The zero-shot prompt templates of a classification dataset, with ``{}`` for the class name:
    clip-benchmark's list for the dataset (CLIP's per-dataset templates; the paper's for Oxford-Pets-paper),
    CLIP's 80 ImageNet templates for ImageNet-A/-R."""
    s = spec(name)
    if s.kind != "classification":
        raise DatasetError(f"{s.name} is a video dataset: it has captions, not prompt templates")
    if s.prompts is None:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") if callable(t) else t for t in OPENAI_IMAGENET_TEMPLATES]
    return [t.replace("{c}", "{}") for t in _clip_benchmark("zeroshot_classification_templates")[s.prompts]]


def classnames(name: str) -> list[str] | None:
    """The class names of a classification dataset whose class list is fixed (label i is name i):
    Country-211 (CLIP's names of `COUNTRY211_CODES`), Oxford-Pets (CLIP's 37 breeds), Oxford-Pets-paper
    (`PETS_PAPER_CLASSES`), ImageNet-A/-R (CLIP's names of their 200 classes). None for CIFAR-10/100 and
    Food-101, whose names `load_classification` reads from the data."""
    s = spec(name)
    if s.name == "Country-211":
        return list(_clip_benchmark("classnames")["country211"])
    if s.name == "Oxford-Pets":
        return list(_clip_benchmark("classnames")["pets"])
    if s.name == "Oxford-Pets-paper":
        return list(PETS_PAPER_CLASSES)
    if s.name.startswith("ImageNet"):
        return list(_imagenet_subset(s.folder.split("-")[1])[1])
    return None


# ------------------------------------------------------------------------------------- images


def _resize_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> uint8 [..., 3, size, size]: shorter side to `size` (bicubic,
    antialiased), then the centre crop (on tensors: video frames)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if x.shape[-2:] != (size, size):
        x = TF.resize(x, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x.contiguous()


def _pil_to_uint8(img, size: int) -> torch.Tensor:
    """A PIL image as uint8 [3, size, size], made exactly as open_clip's preprocessing makes it before
    ``ToTensor``: ``Resize(size)`` (shorter side, PIL bicubic), ``CenterCrop(size)``, then RGB."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    img = TF.center_crop(TF.resize(img, size, interpolation=InterpolationMode.BICUBIC), size)
    return TF.pil_to_tensor(img.convert("RGB"))


def _open_image(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return _pil_to_uint8(img, size)
    except OSError as e:
        raise DatasetError(
            f"Cannot read image {path} ({e}); the file is damaged: download the dataset again or delete the file."
        ) from None


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


class _Refused(pickle.UnpicklingError):
    """A pickle that names something other than the plain data a dataset's pickle holds."""


# What CIFAR's batches (dicts of numpy uint8 arrays, lists of ints and byte strings, written by
# Python 2) and CLIP4Clip's raw-captions.pkl (a dict of lists of lists of strings) need, and nothing
# else: a pickle naming any other callable (os.system, builtins.eval, ...) is refused before it runs.
_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol 2 writes bytes under Python 3
    }
)


class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain data only (builtins' containers and numbers, numpy arrays): `find_class` admits
    the few numpy reconstruction functions listed above and refuses every other global."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"it names {module}.{name}, which a data pickle never holds (it would run code)")


def load_data_pickle(path: Path, encoding: str = "ASCII"):
    """`pickle.load` of a dataset's pickle, which never executes what the file names: a pickle that
    names anything but plain data and numpy arrays raises `_Refused` (an `UnpicklingError`)."""
    with open(path, "rb") as f:
        return _DataUnpickler(f, encoding=encoding).load()


def _unpickle(path: Path, s: _Spec) -> dict:
    try:
        out = load_data_pickle(path, encoding="latin1")
    except _Refused as e:
        raise DatasetError(
            f"{s.name}: refused to load {path}: {e}. It is not a CIFAR python pickle; delete it. {_fix(s, root())}"
        ) from None
    except Exception as e:  # truncated, not a pickle, ...
        raise DatasetError(
            f"{s.name}: cannot read {path} as a CIFAR python pickle ({type(e).__name__}: {e}); "
            f"the file is damaged. {_fix(s, root())}"
        ) from None
    if not isinstance(out, dict):
        raise DatasetError(f"{s.name}: {path} is not a CIFAR python pickle (no dict inside)")
    return out


def _cifar_arrays(s: _Spec, base: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(data uint8 [N, 3072], labels int64 [N], class names) of a CIFAR test split, checked."""
    from torchvision import datasets as tvd

    cls = getattr(tvd, s.torchvision)
    folder = base / cls.base_folder
    batch = _unpickle(folder / cls.test_list[0][0], s)
    meta = _unpickle(folder / cls.meta["filename"], s)
    classes = meta.get(cls.meta["key"])
    data = batch.get("data")
    labels = batch.get("labels", batch.get("fine_labels"))
    if classes is None or data is None or labels is None:
        raise DatasetError(
            f"{s.name}: {folder} has pickles without the expected keys (data, labels, "
            f"{cls.meta['key']}); the files are damaged. {_fix(s, base)}"
        )
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetError(
            f"{s.name}: {folder / cls.test_list[0][0]} holds data of shape {data.shape} "
            f"({data.dtype}) for {len(labels)} labels, not uint8 [N, 3072]; the file is damaged."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f"{s.name}: labels outside the {len(classes)} classes in {folder}")
    return data, labels, [_clean(c) for c in classes]


def _cifar(s: _Spec, base: Path, idx_of: Callable, size: int):
    from PIL import Image

    data, labels, classes = _cifar_arrays(s, base)
    idx = idx_of(len(labels))
    hwc = data[idx].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # as torchvision's CIFAR10 hands them to PIL
    images = [_pil_to_uint8(Image.fromarray(x), size) for x in hwc]
    images = torch.stack(images) if images else torch.empty(0, 3, size, size, dtype=torch.uint8)
    return images, labels[idx], classes


def _torchvision_set(s: _Spec, base: Path):
    from torchvision import datasets as tvd

    cls = getattr(tvd, s.torchvision)
    try:
        return cls(str(base), split="test", download=False)
    except (RuntimeError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise DatasetError(
            f"{s.name}: torchvision cannot read {base / s.folder} ({type(e).__name__}: {e}). "
            f"Expected layout: {s.layout}. {_fix(s, base)}"
        ) from None


def _torchvision_paths(ds) -> list:
    return list(getattr(ds, "_image_files", None) or getattr(ds, "_images", None) or [p for p, _ in getattr(ds, "samples", [])])


def _global_labels(s: _Spec, base: Path, ds) -> np.ndarray | None:
    """Country-211 and Oxford-Pets: a map from torchvision's label (which indexes the classes on disk)
    to the index in the dataset's whole class list (`classnames`); None where they are the same."""
    if s.name == "Country-211":
        code_index = {c: i for i, c in enumerate(COUNTRY211_CODES)}
        stray = [c for c in ds.classes if c not in code_index]
        if stray:
            raise DatasetError(
                f"{s.name}: {base / 'country211' / 'test'} has folders that are not Country-211 "
                f"country codes: {', '.join(stray[:5])}. Expected layout: {s.layout}."
            )
        return np.asarray([code_index[c] for c in ds.classes], dtype=np.int64)
    if s.name == "Oxford-Pets":  # torchvision's labels are the annotation's class ids - 1: already global
        names = classnames(s.name)
        for label, name in zip(sorted(set(ds._labels)), ds.classes):
            if label >= len(names) or names[label].lower() != name.lower():
                raise DatasetError(
                    f"{s.name}: class id {label + 1} of {base / s.folder / 'annotations'} is "
                    f"{name!r}, not {names[label] if label < len(names) else '(none)'!r} "
                    "as in the Oxford-IIIT Pet release; the annotation file is not the dataset's."
                )
    return None


def _torchvision(s: _Spec, base: Path, idx_of: Callable, size: int):
    """Food-101, Country-211, Oxford-IIIT Pets through torchvision's classes (split "test")."""
    ds = _torchvision_set(s, base)
    paths = _torchvision_paths(ds)
    to_global = _global_labels(s, base, ds)
    idx = idx_of(len(ds))

    def one(i):
        try:
            img, label = ds[int(i)]
        except OSError as e:
            where = paths[i] if i < len(paths) else f"item {i} of {base / s.folder}"
            raise DatasetError(
                f"{s.name}: cannot read image {where} ({e}); the file is damaged: download the dataset again or delete the file."
            ) from None
        return _pil_to_uint8(img, size), label

    out = _parallel(one, list(idx))
    classes = classnames(s.name) or [_clean(c) for c in ds.classes]
    labels = np.asarray([lab for _, lab in out], dtype=np.int64)
    if to_global is not None and len(labels):
        labels = to_global[labels]
    if len(labels) and labels.max() >= len(classes):
        raise DatasetError(
            f"{s.name}: {base / s.folder} has labels beyond its {len(classes)} classes (a partial copy of the split?)"
        )
    images = torch.stack([im for im, _ in out]) if out else torch.empty(0, 3, size, size, dtype=torch.uint8)
    return images, labels, classes


def _pets_paper_listing(s: _Spec, base: Path) -> list[tuple[Path, int]]:
    """The paper's Oxford-Pets listing: every file of ``images/`` but the .mat files (sorted: the
    paper's os.listdir order is the file system's), labelled by its name's first token."""
    folder = base / "oxford-iiit-pet" / "images"
    index = {c: i for i, c in enumerate(PETS_PAPER_CLASSES)}
    samples = []
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.suffix == ".mat":
            continue
        token = f.name.split("_")[0]
        if token not in index:
            raise DatasetError(
                f"{s.name}: {f} is not an Oxford-IIIT Pet image: its first name token {token!r} "
                f"is none of the paper's 35 classes. Expected layout: {s.layout}."
            )
        samples.append((f, index[token]))
    if not samples:
        raise DatasetNotFoundError(f"{s.name}: no images in {folder}. {_fix(s, base)}")
    return samples


def _pets_paper(s: _Spec, base: Path, idx_of: Callable, size: int):
    samples = _pets_paper_listing(s, base)
    idx = idx_of(len(samples))
    images = torch.stack(_parallel(lambda i: _open_image(samples[i][0], size), list(idx)))
    return images, np.asarray([samples[i][1] for i in idx], dtype=np.int64), list(PETS_PAPER_CLASSES)


@cache
def _imagenet_subset(which: str) -> tuple[list[str], list[str]]:
    """(wnids, CLIP class names) of the 200-class ImageNet-A or ImageNet-R subset, from timm's lists."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    wnids = (resources.files("timm.data") / "_info" / f"imagenet_{which}_synsets.txt").read_text().split()
    index = {w: i for i, w in enumerate(ImageNetInfo("imagenet-1k").label_names())}
    return wnids, [IMAGENET_CLASSNAMES[index[w]] for w in wnids]


def _imagenet_samples(s: _Spec, base: Path) -> list[tuple[Path, int]]:
    folder = base / s.folder
    wnids, _ = _imagenet_subset(s.folder.split("-")[1])
    label_of = {w: i for i, w in enumerate(wnids)}
    present = sorted(p for p in folder.iterdir() if p.is_dir())
    stray = [p.name for p in present if p.name not in label_of]
    if stray:
        raise DatasetError(
            f"{s.name}: {folder} has folders that are not classes of {s.name}: "
            f"{', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''}. Expected layout: {s.layout}."
        )
    samples = [
        (f, label_of[d.name]) for d in present for f in sorted(d.iterdir()) if f.is_file() and f.suffix in IMAGE_EXTENSIONS
    ]
    if not samples:
        raise DatasetNotFoundError(f"{s.name}: no images in {folder} (expected layout: {s.layout}). {_fix(s, base)}")
    return samples


def _imagenet_shift(s: _Spec, base: Path, idx_of: Callable, size: int):
    samples = _imagenet_samples(s, base)
    idx = idx_of(len(samples))
    images = torch.stack(_parallel(lambda i: _open_image(samples[i][0], size), list(idx)))
    return images, np.asarray([samples[i][1] for i in idx], dtype=np.int64), classnames(s.name)


def load_classification(name: str, n: int | None = None, seed: int = 0, size: int | None = None):
    """The test split of an image-classification dataset: ``(EvalSet, classnames, templates)``.

    The `EvalSet` (ccs.evalset) is named after the dataset and has one task, also named after it;
    images are uint8 [N, 3, size, size] (`size` default 224), resized and centre-cropped as open_clip
    does; labels index `classnames` (the dataset's whole class list, even for a partial copy);
    `templates` are the dataset's prompts (`templates`). `n` takes a reproducible random subset (by
    `seed`; in disk order). Missing data raises `DatasetNotFoundError`, unreadable data
    `DatasetError`, both before any image is decoded where possible.
    """
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
    elif s.name == "Oxford-Pets-paper":
        images, labels, classes = _pets_paper(s, base, idx_of, size)
    else:
        images, labels, classes = _torchvision(s, base, idx_of, size)
    return EvalSet(s.name, images, {s.name: labels}), classes, templates(s.name)


# ------------------------------------------------------------------------------------- videos


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


def _corrupt(path: Path, why: str) -> DatasetError:
    return DatasetError(
        f"Cannot decode the video {path} ({why}); the file is damaged or not a video: download the dataset's videos again."
    )


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


# ------------------------------------------------------------------------------------- check


def _check_image(path: Path) -> str | None:
    """None if the image decodes (JPEGs at reduced scale: every byte is still read), else why not."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))
            img.load()
    except Exception as e:  # PIL raises many kinds for damaged files
        return f"{path}: cannot decode ({type(e).__name__}: {e})"
    return None


def _check_video(path: Path) -> str | None:
    """None if the file opens as a video and its first frame decodes, else why not."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return f"{path}: no video stream"
            next(container.decode(container.streams.video[0]))
    except StopIteration:
        return f"{path}: no frame could be decoded"
    except Exception as e:  # av.FFmpegError, OSError, ...
        return f"{path}: cannot decode ({type(e).__name__}: {e})"
    return None


def _listed_files(s: _Spec, base: Path) -> tuple[list[Path], list[str], int]:
    """(files to open, problems found while listing them, items checked while listing) of a present
    dataset."""
    if s.name.startswith("CIFAR"):
        _, labels, _ = _cifar_arrays(s, base)  # raises for a damaged pickle; the images are inside it
        return [], [], len(labels)
    if s.name.startswith("ImageNet"):
        return [f for f, _ in _imagenet_samples(s, base)], [], 0
    if s.name == "Oxford-Pets-paper":
        return [f for f, _ in _pets_paper_listing(s, base)], [], 0
    if s.kind == "classification":
        ds = _torchvision_set(s, base)
        _global_labels(s, base, ds)
        return [Path(p) for p in _torchvision_paths(ds)], [], 0
    split = _video_split(s, base)
    missing = [v for v, f in zip(split.ids, split.files) if f is None]
    problems = []
    if missing:
        left = " (a run leaves them out)" if s.name != "MSR-VTT" else " (a run stops)"
        problems.append(
            f"{len(missing)} of the {len(split.ids)} videos of the test split are not in "
            f"{split.folder}{left}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return [f for f in split.files if f is not None], problems, 0


def check(name: str, progress: bool = False, limit: int = 20) -> dict:
    """Open everything a dataset lists (what ``ccs data --check`` does), beyond `info`'s check that
    the required paths exist: CIFAR's pickles are read and checked for structure, every image listed by
    the split is decoded, every video of a video split is looked for and its first frame decoded.

    Returns ``{"name", "present", "checked" (files opened), "problems" (at most `limit` messages),
    "problem_count", "ok"}``; a dataset that is not present is not opened (``ok`` False)."""
    s = spec(name)
    out = {"name": s.name, "present": info(s.name)["present"], "checked": 0, "problems": [], "problem_count": 0}
    if not out["present"]:
        return {**out, "ok": False}
    base = root()
    try:
        files, problems, counted = _listed_files(s, base)
    except (DatasetError, DatasetNotFoundError) as e:
        files, problems, counted = [], [str(e)], 0
    from tqdm.auto import tqdm

    opener = _check_video if s.kind == "video" else _check_image
    bar = tqdm(total=len(files), desc=f"checking {s.name}", unit="file", disable=not progress)

    def one(f):
        why = opener(f)
        bar.update()
        return why

    try:
        problems += [why for why in _parallel(one, files) if why]
    finally:
        bar.close()
    return {
        **out,
        "checked": counted + len(files),
        "problems": problems[:limit],
        "problem_count": len(problems),
        "ok": not problems,
    }


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
        raise DatasetError(
            f"{s.name} cannot be downloaded by `ccs data fetch`: {s.how.format(root=base)} (expected layout: {s.layout})."
        )
    cls = getattr(tvd, s.torchvision)
    url = getattr(cls, "url", None) or getattr(cls, "_URL", None) or cls._RESOURCES[0][0]
    host = urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        raise DatasetError(
            f"Cannot reach {host} to download {s.name} ({e}). On a machine with internet run "
            f"`ccs data fetch {s.name}`, or download {url} by hand and extract it into {base} "
            f"(expected layout: {s.layout})."
        ) from None
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
