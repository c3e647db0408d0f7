"""The image-classification datasets (`load_classification`): CIFAR-10/100 from their python
pickles, Food-101, Country-211 and Oxford-Pets through torchvision's classes, the paper's
Oxford-Pets listing, and ImageNet-A/-R from their WordNet-id folders; every image resized and
centre-cropped as open_clip's preprocessing does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ccs.datasets.prompts import COUNTRY211_CODES, PETS_PAPER_CLASSES, _imagenet_subset, classnames, templates
from ccs.datasets.reading import _parallel, _Refused, _subset, load_data_pickle
from ccs.datasets.registry import DEFAULT_SIZE, DatasetError, DatasetNotFoundError, _fix, _require, _Spec, root, spec
from ccs.evalset import EvalSet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG", ".JPG", ".PNG")


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


def _clean(name: str) -> str:
    return name.replace("_", " ").strip()


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
