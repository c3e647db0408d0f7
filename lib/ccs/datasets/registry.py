"""The registry of the paper's datasets: one `_Spec` each (where it goes under the data root, what it
needs, how to get it), their names and aliases (`names`, `spec`), the data root (`root`), what `ccs
data` shows (`info`), the check a loader makes before reading (`_require`), and the errors and the
warning every loader raises."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "CCS_DATA"
DEFAULT_SIZE = 224


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
