"""A dataset's files: `check` opens every file a present dataset lists (``ccs data --check``),
`fetch` downloads the datasets torchvision can download (``ccs data fetch``)."""

from __future__ import annotations

from pathlib import Path

from ccs.datasets.images import (
    _cifar_arrays,
    _global_labels,
    _imagenet_samples,
    _pets_paper_listing,
    _torchvision_paths,
    _torchvision_set,
)
from ccs.datasets.reading import _parallel
from ccs.datasets.registry import DatasetError, DatasetNotFoundError, _Spec, info, root, spec
from ccs.datasets.videos import _video_split


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
