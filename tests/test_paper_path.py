"""The whole grid on a paper architecture without its weights: every experiment notebook runs end to
end on ViT-B-32-OpenAI with random weights (`weights="random"`), the world pool, the offline labeler
and, where a page takes them, the paper's published head lists. This is how a re-runner knows the real
path works before spending GPU hours on it.

Every count (images, clips, frames) is the smallest its declaration in the parameters cell allows: the
pages run in minutes instead of a quarter of an hour, and the declared ranges are shown to hold (a value
that passes the check before a kernel starts also runs)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import nbformat
import numpy as np
import pytest

from ccs import paper_tables, pipeline

MODEL = "ViT-B-32-OpenAI"
# one analysis seed: the seeds page repeats the pruning page's test per seed, and one shows that it runs
FIXED = {"weights": "random", "seeds": 2, "sets": "paper", "labels": "paper", "pool": "world:150", "analysis_seeds": [0]}
COUNTS = ("images", "test_images", "target_images", "eval_images", "clips", "frames")  # the smallest allowed
EXPERIMENTS = list(dict.fromkeys(r.experiment for r in pipeline.runs()))


def small(declared: dict) -> dict:
    """The parameters of a page's run here: FIXED, and each count at the lower bound it declares."""
    import re

    out = {k: v for k, v in FIXED.items() if k in declared}
    for name in COUNTS:
        if name in declared:
            bound = re.search(r"(?:^|,)\s*at least\s+(\d+)", declared[name].range)
            assert bound, f"{name} declares no lower bound: [{declared[name].range}]"
            out[name] = int(bound[1])
    return out


def _tiny_cifar10(root: Path) -> None:
    """A CIFAR-10 test split of 24 images in the real pickle format (as ccs.datasets reads it)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batch = {
        "batch_label": "testing batch 1 of 1",
        "data": rng.integers(0, 256, (24, 3072), dtype=np.uint8),
        "labels": [i % 10 for i in range(24)],
        "filenames": [f"{i}.png" for i in range(24)],
    }
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for name, obj in (("test_batch", batch), ("batches.meta", {"label_names": names})):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)


def _tiny_country211_and_msrvtt(root: Path) -> None:
    """Country-211 (three country folders of JPEGs) and MSR-VTT 1k-A (a caption csv and three short
    mp4 videos written with PyAV's own encoder), in their real layouts."""
    import av
    from PIL import Image

    for i, code in enumerate(("AD", "FR", "US")):
        for j in range(2):
            path = root / "country211" / "test" / code / f"{j}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), (80 * i, 40 * j, 120)).save(path)
    base = root / "msrvtt"
    (base / "videos" / "all").mkdir(parents=True)
    (base / "MSRVTT_JSFUSION_test.csv").write_text(
        "key,vid_key,video_id,sentence\n" + "".join(f"ret{i},msr{i},video{i},a clip number {i}\n" for i in range(3))
    )
    for i in range(3):
        with av.open(str(base / "videos" / "all" / f"video{i}.mp4"), "w") as out:
            stream = out.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for f in range(8):
                frame = np.full((48, 64, 3), (30 * i + 10 * f) % 250, np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module (the kernels inherit it): the random model's decomposition and pool
    embeddings are computed once, not once per page; and a data root holding a tiny CIFAR-10, so the
    pruning, concepts, OOD and video pages measure a paper dataset each too."""
    old = {k: os.environ.get(k) for k in ("CCS_CACHE", "CCS_DATA")}
    os.environ["CCS_CACHE"] = str(tmp_path_factory.mktemp("ccs-cache"))
    os.environ["CCS_DATA"] = str(tmp_path_factory.mktemp("ccs-data"))
    _tiny_cifar10(Path(os.environ["CCS_DATA"]))
    _tiny_country211_and_msrvtt(Path(os.environ["CCS_DATA"]))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k)
        else:
            os.environ[k] = v


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_page_runs_on_a_paper_architecture_with_random_weights(experiment, cache, tmp_path):
    run = pipeline.Run(MODEL, experiment)
    declared = pipeline.declarations(run.source)
    assert "weights" in declared, f"{experiment} cannot be run with random weights"
    extra = small(declared)
    page = pipeline.execute(run, extra=extra, out_dir=tmp_path, progress=False)
    nb = nbformat.read(page, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = [o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs]
    first = next(t for t in text if t.strip())
    assert f"{MODEL} (ViT-B-32-quickgelu) with RANDOM WEIGHTS" in first, first[:300]
    assert "Traceback" not in "".join(text)
    measured = {"pruning": "CIFAR-10", "ood": "Country-211", "video": "MSR-VTT", "concepts": "Country-211"}.get(experiment)
    if measured:  # the tiny copy was measured and sits beside the paper's numbers
        assert "this run: original" in "".join(text) and f"{measured}: not measured" not in "".join(text)
    for written in tmp_path.glob("*.json"):
        assert json.loads(written.read_text())["weights"] == "random", written.name
    if measured:  # ... and its JSON carries the row the paper-vs-book page reads (ccs.paper_tables)
        summaries = {experiment: json.loads((tmp_path / f"{experiment}.json").read_text())}
        rows = {t.key: paper_tables.run_numbers(t, summaries) for t in paper_tables.TABLES}
        filled = [k for k, v in rows.items() if any(x is not None for vals in v.values() for x in vals)]
        assert filled, rows
