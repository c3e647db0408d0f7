"""ccs.datasets reads the paper's datasets from their real on-disk formats: tiny copies of each one,
written here in that format (CIFAR python pickles, Food-101's meta json, Country-211 and ImageNet-R
class folders, the Pets annotation file, MSR-VTT's caption csv, MSVD's caption file, DiDeMo's json,
videos encoded with PyAV), are read back through the real code; missing or damaged data gives the
clear error, and `ccs data` lists what is there. Nothing here touches the network."""
import json
import os
import pickle
import socket

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ccs import datasets
from ccs.cli import app
from ccs.pruning import EvalSet


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CCS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def _jpg(path, color, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)


def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _video(path, n_frames, codec="mpeg4", w=64, h=48):
    """A short video whose frame i is filled with gray level 10 * i mod 250 (so a frame's index can be read back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), (10 * i) % 250, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _level(frames):
    """The frame index encoded by `_video` in each frame (mean gray level / 10)."""
    return np.round(frames.float().mean(dim=(1, 2, 3)).numpy() / 10).astype(int)


# ------------------------------------------------------------------------------ classification


def test_cifar10_pickles(env):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    _pickle(env / "cifar-10-batches-py" / "test_batch",
            {"batch_label": "testing batch 1 of 1", "data": data, "labels": [0, 1, 2, 3, 9, 9],
             "filenames": [f"{i}.png" for i in range(6)]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(env / "cifar-10-batches-py" / "batches.meta",
            {"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072})
    es, classes, templates = datasets.load_classification("CIFAR-10", size=32)
    assert isinstance(es, EvalSet) and es.name == "CIFAR-10"
    assert classes == names and templates == ["a photo of a {}."]
    assert es.images.dtype.is_floating_point is False and es.images.shape == (6, 3, 32, 32)
    assert np.array_equal(es.labels["CIFAR-10"], [0, 1, 2, 3, 9, 9])
    assert np.array_equal(es.images[4].numpy().ravel(), data[4])  # torchvision's layout: CHW, row-major
    es2, _, _ = datasets.load_classification("cifar10", n=3, seed=1)  # default size 224, a subset
    assert es2.images.shape == (3, 3, 224, 224)
    again, _, _ = datasets.load_classification("cifar10", n=3, seed=1, size=32)
    assert np.array_equal(es2.labels["CIFAR-10"], again.labels["CIFAR-10"])


def test_cifar100_pickles_and_damage(env):
    data = np.zeros((3, 3072), np.uint8)
    _pickle(env / "cifar-100-python" / "test",
            {"data": data, "fine_labels": [0, 1, 2], "coarse_labels": [0, 0, 1], "filenames": ["a", "b", "c"]})
    _pickle(env / "cifar-100-python" / "meta",
            {"fine_label_names": ["apple", "aquarium_fish", "baby"], "coarse_label_names": ["x", "y"]})
    es, classes, _ = datasets.load_classification("CIFAR-100", size=16)
    assert classes == ["apple", "aquarium fish", "baby"] and es.images.shape == (3, 3, 16, 16)
    assert list(es.labels["CIFAR-100"]) == [0, 1, 2]
    (env / "cifar-100-python" / "test").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(datasets.DatasetError, match="cifar-100-python/test"):
        datasets.load_classification("CIFAR-100")
    (env / "cifar-100-python" / "test").unlink()
    _pickle(env / "cifar-100-python" / "test", {"data": data, "fine_labels": [0, 1, 2]})
    assert len(datasets.load_classification("CIFAR-100", n=4, size=16)[0].images) == 3  # at most n: all 3
    with pytest.raises(datasets.DatasetError, match="at least 1"):
        datasets.load_classification("CIFAR-100", n=0)


def test_food101_through_torchvision(env):
    base = env / "food-101"
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "classes.txt").write_text("apple_pie\nbaby_back_ribs\n")
    (base / "meta" / "test.json").write_text(json.dumps(
        {"apple_pie": ["apple_pie/1011328", "apple_pie/101251"], "baby_back_ribs": ["baby_back_ribs/1005293"]}))
    for rel, color in [("apple_pie/1011328", "red"), ("apple_pie/101251", "red"), ("baby_back_ribs/1005293", "blue")]:
        _jpg(base / "images" / f"{rel}.jpg", color, size=(60, 40))
    es, classes, _ = datasets.load_classification("Food-101", size=24)
    assert classes == ["apple pie", "baby back ribs"]
    assert es.images.shape == (3, 3, 24, 24) and list(es.labels["Food-101"]) == [0, 0, 1]
    assert es.images[2, 2].float().mean() > 200 and es.images[2, 0].float().mean() < 50  # blue
    (base / "meta" / "test.json").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"food-101/meta/test\.json.*ccs data fetch Food-101"):
        datasets.load_classification("Food-101")


def test_country211_class_folders(env):
    for code, color in [("AD", "red"), ("FR", "green"), ("US", "blue")]:
        _jpg(env / "country211" / "test" / code / "1.jpg", color)
    es, classes, _ = datasets.load_classification("Country-211", size=16)
    assert classes == ["Andorra", "France", "United States"]
    assert list(es.labels["Country-211"]) == [0, 1, 2] and es.images.shape == (3, 3, 16, 16)


def test_oxford_pets_annotations(env):
    base = env / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "test.txt").write_text(
        "Abyssinian_1 1 1 1\namerican_bulldog_10 2 2 1\nAbyssinian_2 1 1 1\n")
    for name in ("Abyssinian_1", "american_bulldog_10", "Abyssinian_2"):
        _jpg(base / "images" / f"{name}.jpg", "white")
    es, classes, _ = datasets.load_classification("Oxford-Pets", size=16)
    assert classes == ["Abyssinian", "American Bulldog"]
    assert list(es.labels["Oxford-Pets"]) == [0, 1, 0]
    (base / "annotations" / "test.txt").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"annotations/test\.txt"):
        datasets.load_classification("pets")


def test_imagenet_r_wnid_folders(env):
    wnids, names = datasets._imagenet_subset("r")
    assert len(wnids) == 200 and names[:2] == ["goldfish", "great white shark"]
    pick = [wnids[0], wnids[5], wnids[199]]
    for k, w in enumerate(pick):
        for j in range(2):
            _jpg(env / "imagenet-r" / w / f"art_{j}.jpg", (k * 100, 0, 0))
    es, classes, templates = datasets.load_classification("ImageNet-R", size=20)
    assert classes == names and len(classes) == 200  # the 200-way benchmark, even for a partial copy
    assert list(es.labels["ImageNet-R"]) == [0, 0, 5, 5, 199, 199]
    assert len(templates) == 80 and all("{}" in t for t in templates)
    sub, _, _ = datasets.load_classification("ImageNet-R", n=2, seed=3, size=20)
    assert sub.images.shape == (2, 3, 20, 20)
    (env / "imagenet-r" / "n99999999").mkdir()
    with pytest.raises(datasets.DatasetError, match="n99999999"):
        datasets.load_classification("ImageNet-R")


def test_missing_root_and_missing_dataset(env, tmp_path, monkeypatch):
    with pytest.raises(datasets.DatasetNotFoundError, match=r"ImageNet-A is not in the data root.*imagenet-a\.tar"):
        datasets.load_classification("ImageNet-A")
    monkeypatch.setenv("CCS_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(datasets.DatasetNotFoundError, match=r"data root .*nowhere does not exist.*CCS_DATA"):
        datasets.load_classification("CIFAR-10")
    with pytest.raises(datasets.DatasetNotFoundError, match="nowhere"):
        datasets.load_video("MSR-VTT")
    with pytest.raises(datasets.UnknownDatasetError, match="Known datasets"):
        datasets.info("imagenet")
    assert datasets.info("MSVD")["present"] is False  # info never raises


# ------------------------------------------------------------------------------------- video


def _msrvtt(env):
    base = env / "msrvtt"
    base.mkdir()
    (base / "MSRVTT_JSFUSION_test.csv").write_text(
        "key,vid_key,video_id,sentence\n"
        "ret0,msr7020,video7020,a man is singing\n"
        "ret1,msr7021,video7021,a dog runs on the grass\n")
    _video(base / "videos" / "all" / "video7020.mp4", 24)
    _video(base / "videos" / "all" / "video7021.mp4", 6)
    return base


def test_msrvtt_csv_and_mp4(env):
    _msrvtt(env)
    assert datasets.info("MSR-VTT")["present"]
    frames, captions, vot = datasets.load_video("MSR-VTT", size=32)
    assert frames.shape == (2, 12, 3, 32, 32) and frames.dtype.is_floating_point is False
    assert captions == ["a man is singing", "a dog runs on the grass"] and list(vot) == [0, 1]
    levels = _level(frames[0])  # uniform over 24 frames: the centres of 12 segments of 2
    assert np.abs(levels - np.arange(1, 24, 2)).max() <= 1 and (np.diff(levels) >= 0).all()
    assert (np.diff(_level(frames[1])) >= 0).all()  # 6 frames for 12: repeats, in order
    one, caps, v = datasets.load_video("msrvtt", n=1, seed=0, size=32)
    assert one.shape == (1, 12, 3, 32, 32) and len(caps) == 1 and list(v) == [0]


def test_frames_cache(env, tmp_path, monkeypatch):
    _msrvtt(env)
    first, _, _ = datasets.load_video("MSR-VTT", size=16, frames=4)
    assert len(list((tmp_path / "cache" / "frames").rglob("*.npy"))) == 2
    assert not list((tmp_path / "cache" / "frames").rglob("*.tmp"))

    def fail(*a, **k):
        raise AssertionError("decoded again instead of read from the cache")

    monkeypatch.setattr(datasets, "decode_frames", fail)
    again, _, _ = datasets.load_video("MSR-VTT", size=16, frames=4)
    assert np.array_equal(first.numpy(), again.numpy())
    with pytest.raises(AssertionError, match="decoded again"):  # another frame count: another key
        datasets.load_video("MSR-VTT", size=16, frames=5)


def test_msvd_several_captions_per_video(env):
    base = env / "msvd"
    base.mkdir()
    (base / "test_list.txt").write_text("-4wsuPCjDBc_5_15\nabc_1_2\n")
    (base / "AllVideoDescriptions.txt").write_text(
        "# MSR Video Description Corpus\n# VideoID Description\n"
        "-4wsuPCjDBc_5_15 a squirrel is eating a peanut\n"
        "-4wsuPCjDBc_5_15 a chipmunk eats\n"
        "abc_1_2 a woman slices an onion\n"
        "zzz_0_1 a video of the training split\n")
    _video(base / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi", 15)
    _video(base / "YouTubeClips" / "abc_1_2.avi", 13)
    frames, captions, vot = datasets.load_video("MSVD", size=16)
    assert frames.shape == (2, 12, 3, 16, 16)
    assert captions == ["a squirrel is eating a peanut", "a chipmunk eats", "a woman slices an onion"]
    assert list(vot) == [0, 0, 1]
    # CLIP4Clip's msvd_data.zip: captions as token lists in raw-captions.pkl (preferred when present)
    _pickle(base / "raw-captions.pkl", {"-4wsuPCjDBc_5_15": [["a", "squirrel"]], "abc_1_2": [["an", "onion"], ["cut"]]})
    _, captions, vot = datasets.load_video("MSVD", size=16)
    assert captions == ["a squirrel", "an onion", "cut"] and list(vot) == [0, 1, 1]
    (base / "test_list.txt").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"msvd/test_list\.txt is missing"):
        datasets.load_video("MSVD")


def test_didemo_paragraphs_and_32_frames(env):
    base = env / "didemo"
    base.mkdir()
    (base / "test_data.json").write_text(json.dumps([
        {"video": "10015567@N08_3655084291.mov", "description": "a dog jumps.", "times": [[0, 0]]},
        {"video": "10015567@N08_3655084291.mov", "description": "the dog lands.", "times": [[1, 1]]}]))
    _video(base / "videos" / "10015567@N08_3655084291.mp4", 40)
    frames, captions, vot = datasets.load_video("DiDeMo", size=16)
    assert frames.shape == (1, 32, 3, 16, 16)
    assert captions == ["a dog jumps. the dog lands."] and list(vot) == [0]


def test_corrupt_and_missing_video(env):
    base = _msrvtt(env)
    (base / "videos" / "all" / "video7021.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    with pytest.raises(datasets.DatasetError, match=r"Cannot decode the video .*video7021\.mp4"):
        datasets.load_video("MSR-VTT", size=16)
    (base / "videos" / "all" / "video7021.mp4").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"video7021.*not in .*videos/all"):
        datasets.load_video("MSR-VTT", size=16)


# --------------------------------------------------------------------------------------- CLI


def test_cli_lists_and_refuses(env, monkeypatch):
    _msrvtt(env)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)["datasets"]}
    assert set(rows) == set(datasets.names()) and rows["MSR-VTT"]["present"] and not rows["MSVD"]["present"]
    assert rows["CIFAR-10"]["path"] == str(env / "cifar-10-batches-py")
    table = runner.invoke(app, ["data"])
    assert table.exit_code == 0 and "MSR-VTT" in table.output and "ccs data fetch CIFAR-10" in table.output

    result = runner.invoke(app, ["data", "fetch", "DiDeMo"])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "didemo/test_data.json" in result.output

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    result = runner.invoke(app, ["data", "fetch", "cifar-10"])
    assert result.exit_code == 1 and result.output.startswith("error: Cannot reach"), result.output
    assert len(result.output.strip().splitlines()) == 1
