"""ccs.datasets reads the paper's datasets from their real on-disk formats: tiny copies of each one,
written here in that format (CIFAR python pickles, Food-101's meta json, Country-211 and ImageNet-R
class folders, the Pets annotation file, MSR-VTT's caption csv, MSVD's caption file, DiDeMo's json,
videos encoded with PyAV), are read back through the real code, with the prompts, class names and
video protocols of the paper and of CLIP4Clip; missing or damaged data gives the clear error (or, for
MSVD and DiDeMo videos, a warning that counts what is left out), `ccs data` lists what is there and
`ccs data --check` opens it. Nothing here touches the network. (tests/test_protocol.py checks the same
loaders against clip-benchmark and CLIP4Clip's metrics on a random-weights paper architecture.)"""

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
from ccs.evalset import EvalSet, VideoSet


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
    _pickle(
        env / "cifar-10-batches-py" / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "data": data,
            "labels": [0, 1, 2, 3, 9, 9],
            "filenames": [f"{i}.png" for i in range(6)],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(env / "cifar-10-batches-py" / "batches.meta", {"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072})
    es, classes, templates = datasets.load_classification("CIFAR-10", size=32)
    assert isinstance(es, EvalSet) and es.name == "CIFAR-10"
    assert classes == names and len(templates) == 18  # CLIP's CIFAR templates (clip-benchmark, the paper)
    assert templates[0] == "a photo of a {}." and templates[-1] == "a photo of the big {}."
    assert es.images.dtype.is_floating_point is False and es.images.shape == (6, 3, 32, 32)
    assert np.array_equal(es.labels["CIFAR-10"], [0, 1, 2, 3, 9, 9])
    assert np.array_equal(es.images[4].numpy().ravel(), data[4])  # torchvision's layout: CHW, row-major
    es2, _, _ = datasets.load_classification("cifar10", n=3, seed=1)  # default size 224, a subset
    assert es2.images.shape == (3, 3, 224, 224)
    again, _, _ = datasets.load_classification("cifar10", n=3, seed=1, size=32)
    assert np.array_equal(es2.labels["CIFAR-10"], again.labels["CIFAR-10"])


def test_cifar100_pickles_and_damage(env):
    data = np.zeros((3, 3072), np.uint8)
    _pickle(
        env / "cifar-100-python" / "test",
        {"data": data, "fine_labels": [0, 1, 2], "coarse_labels": [0, 0, 1], "filenames": ["a", "b", "c"]},
    )
    _pickle(
        env / "cifar-100-python" / "meta",
        {"fine_label_names": ["apple", "aquarium_fish", "baby"], "coarse_label_names": ["x", "y"]},
    )
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
    (base / "meta" / "test.json").write_text(
        json.dumps({"apple_pie": ["apple_pie/1011328", "apple_pie/101251"], "baby_back_ribs": ["baby_back_ribs/1005293"]})
    )
    for rel, color in [("apple_pie/1011328", "red"), ("apple_pie/101251", "red"), ("baby_back_ribs/1005293", "blue")]:
        _jpg(base / "images" / f"{rel}.jpg", color, size=(60, 40))
    es, classes, templates = datasets.load_classification("Food-101", size=24)
    assert classes == ["apple pie", "baby back ribs"] and templates == ["a photo of {}, a type of food."]
    assert es.images.shape == (3, 3, 24, 24) and list(es.labels["Food-101"]) == [0, 0, 1]
    assert es.images[2, 2].float().mean() > 200 and es.images[2, 0].float().mean() < 50  # blue
    (base / "meta" / "test.json").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"food-101/meta/test\.json.*ccs data fetch Food-101"):
        datasets.load_classification("Food-101")


def test_country211_class_folders(env):
    for code, color in [("AD", "red"), ("CD", "white"), ("FR", "green"), ("TR", "black"), ("US", "blue")]:
        _jpg(env / "country211" / "test" / code / "1.jpg", color)
    es, classes, templates = datasets.load_classification("Country-211", size=16)
    # the 211-way task with CLIP's names, even for a partial copy: labels index all 211 classes
    assert len(classes) == 211 == len(datasets.COUNTRY211_CODES)
    assert list(datasets.COUNTRY211_CODES) == sorted(datasets.COUNTRY211_CODES)
    code = {c: i for i, c in enumerate(datasets.COUNTRY211_CODES)}
    assert list(es.labels["Country-211"]) == [code["AD"], code["CD"], code["FR"], code["TR"], code["US"]]
    assert [classes[i] for i in es.labels["Country-211"]] == [
        "Andorra",
        "DR Congo",
        "France",
        "Turkey",
        "United States",
    ]  # CLIP's names, not CLDR's
    assert classes[code["HK"]] == "Hong Kong" and classes[code["CZ"]] == "Czech Republic"
    assert len(templates) == 5 and templates[0] == "a photo i took in {}." and es.images.shape == (5, 3, 16, 16)
    (env / "country211" / "test" / "ZZ").mkdir()
    _jpg(env / "country211" / "test" / "ZZ" / "1.jpg", "red")
    with pytest.raises(datasets.DatasetError, match="ZZ"):
        datasets.load_classification("Country-211")


def test_oxford_pets_annotations(env):
    base = env / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "test.txt").write_text("Abyssinian_1 1 1 1\namerican_bulldog_10 2 2 1\nAbyssinian_2 1 1 1\n")
    for name in ("Abyssinian_1", "american_bulldog_10", "Abyssinian_2"):
        _jpg(base / "images" / f"{name}.jpg", "white")
    es, classes, templates = datasets.load_classification("Oxford-Pets", size=16)
    assert len(classes) == 37 and classes[:3] == ["Abyssinian", "American Bulldog", "American Pit Bull Terrier"]
    assert list(es.labels["Oxford-Pets"]) == [0, 1, 0] and templates == ["a photo of a {}, a type of pet."]
    (base / "annotations" / "test.txt").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"annotations/test\.txt"):
        datasets.load_classification("pets")


def test_oxford_pets_the_papers_listing(env):
    folder = env / "oxford-iiit-pet" / "images"
    files = ["Abyssinian_1", "american_bulldog_10", "american_pit_bull_terrier_3", "yorkshire_terrier_5", "Sphynx_2"]
    for name in files:
        _jpg(folder / f"{name}.jpg", "white")
    (folder / "Abyssinian_100.mat").write_bytes(b"MATLAB")  # the release has a few; the paper skips them
    es, classes, templates = datasets.load_classification("pets-paper", size=16)
    assert es.name == "Oxford-Pets-paper" and len(classes) == 35 == len(set(classes))
    assert classes[:2] == ["american", "basset"] and classes[-1] == "Sphynx"
    # every image, sorted by name, labelled by its first name token: both American breeds are "american"
    assert [classes[i] for i in es.labels["Oxford-Pets-paper"]] == ["Abyssinian", "Sphynx", "american", "american", "yorkshire"]
    assert templates == datasets.templates("CIFAR-10")  # the paper's code reuses its CIFAR templates
    assert datasets.info("pets-paper")["present"] and not datasets.info("pets")["present"]  # no annotations
    _jpg(folder / "zebra_1.jpg", "white")
    with pytest.raises(datasets.DatasetError, match="zebra_1.jpg"):
        datasets.load_classification("pets-paper")


def test_imagenet_r_wnid_folders(env):
    wnids, names = datasets.prompts._imagenet_subset("r")
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
        "key,vid_key,video_id,sentence\nret0,msr7020,video7020,a man is singing\nret1,msr7021,video7021,a dog runs on the grass\n"
    )
    _video(base / "videos" / "all" / "video7020.mp4", 24)
    _video(base / "videos" / "all" / "video7021.mp4", 6)
    return base


def test_msrvtt_csv_and_mp4(env):
    _msrvtt(env)
    assert datasets.info("MSR-VTT")["present"]
    vs = datasets.load_video("MSR-VTT", size=32)
    assert isinstance(vs, VideoSet) and vs.protocol == "paper"  # the default: the paper's code
    frames, captions, vot = vs  # unpacks as the three arrays retrieval needs
    assert frames.shape == (2, 12, 3, 32, 32) and frames.dtype.is_floating_point is False
    assert captions == ["a man is singing", "a dog runs on the grass"] and list(vot) == [0, 1]
    assert (vs.gallery, vs.split_videos, vs.missing, vs.full) == (2, 2, [], True)
    levels = _level(frames[0])  # uniform over 24 frames: the centres of 12 segments of 2
    assert np.abs(levels - np.arange(1, 24, 2)).max() <= 1 and (np.diff(levels) >= 0).all()
    assert (np.diff(_level(frames[1])) >= 0).all()  # 6 frames for 12: repeats, in order
    one = datasets.load_video("msrvtt", n=1, seed=0, size=32)
    assert one.frames.shape == (1, 12, 3, 32, 32) and len(one.captions) == 1 and list(one.video_of_text) == [0]
    assert one.gallery == 1 and not one.full  # a subset is not the paper's gallery
    with pytest.raises(datasets.DatasetError, match="unknown video protocol 'clip'.*paper.*clip4clip"):
        datasets.load_video("MSR-VTT", protocol="clip")


def test_frames_cache(env, tmp_path, monkeypatch):
    _msrvtt(env)
    first, _, _ = datasets.load_video("MSR-VTT", size=16, frames=4)
    assert len(list((tmp_path / "cache" / "frames").rglob("*.npy"))) == 2
    assert not list((tmp_path / "cache" / "frames").rglob("*.tmp"))

    def fail(*a, **k):
        raise AssertionError("decoded again instead of read from the cache")

    monkeypatch.setattr(datasets.frames, "decode_frames", fail)  # where cached_frames looks it up
    again, _, _ = datasets.load_video("MSR-VTT", size=16, frames=4)
    assert np.array_equal(first.numpy(), again.numpy())
    with pytest.raises(AssertionError, match="decoded again"):  # another frame count: another key
        datasets.load_video("MSR-VTT", size=16, frames=5)


def _msvd_copy(env):
    base = env / "msvd"
    base.mkdir()
    (base / "test_list.txt").write_text("-4wsuPCjDBc_5_15\nabc_1_2\n")
    (base / "AllVideoDescriptions.txt").write_text(
        "# MSR Video Description Corpus\n# VideoID Description\n"
        "-4wsuPCjDBc_5_15 a squirrel is eating a peanut\n"
        "-4wsuPCjDBc_5_15 a chipmunk eats\n"
        "abc_1_2 a woman slices an onion\n"
        "zzz_0_1 a video of the training split\n"
    )
    _video(base / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi", 15)
    _video(base / "YouTubeClips" / "abc_1_2.avi", 13)
    return base


def test_msvd_captions_under_both_protocols(env):
    base = _msvd_copy(env)
    paper = datasets.load_video("MSVD", size=16)  # the paper's code: the first caption of each video
    assert paper.frames.shape == (2, 12, 3, 16, 16)
    assert paper.captions == ["a squirrel is eating a peanut", "a woman slices an onion"]
    assert list(paper.video_of_text) == [0, 1]
    c4c = datasets.load_video("MSVD", size=16, protocol="clip4clip")  # every caption its own row
    assert c4c.captions == ["a squirrel is eating a peanut", "a chipmunk eats", "a woman slices an onion"]
    assert list(c4c.video_of_text) == [0, 0, 1] and c4c.full
    # CLIP4Clip's msvd_data.zip: captions as token lists in raw-captions.pkl (preferred when present)
    _pickle(base / "raw-captions.pkl", {"-4wsuPCjDBc_5_15": [["a", "squirrel"]], "abc_1_2": [["an", "onion"], ["cut"]]})
    _, captions, vot = datasets.load_video("MSVD", size=16, protocol="clip4clip")
    assert captions == ["a squirrel", "an onion", "cut"] and list(vot) == [0, 1, 1]
    assert datasets.load_video("MSVD", size=16).captions == ["a squirrel", "an onion"]
    (base / "test_list.txt").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"msvd/test_list\.txt is missing"):
        datasets.load_video("MSVD")


def test_msvd_and_didemo_leave_missing_videos_out_and_say_how_many(env):
    base = _msvd_copy(env)
    (base / "test_list.txt").write_text("-4wsuPCjDBc_5_15\nabc_1_2\ngone_0_1\n")
    (base / "AllVideoDescriptions.txt").write_text(
        (base / "AllVideoDescriptions.txt").read_text() + "gone_0_1 a video nobody kept\n"
    )
    with pytest.warns(datasets.DatasetWarning, match=r"MSVD: 1 of the 3 videos .*'gone_0_1'.*left out, so 2"):
        vs = datasets.load_video("MSVD", size=16)
    assert vs.captions == ["a squirrel is eating a peanut", "a woman slices an onion"]
    assert (vs.gallery, vs.split_videos, vs.missing, vs.full) == (2, 3, ["gone_0_1"], False)
    for f in (base / "YouTubeClips").iterdir():  # none of the split's videos: an error, not an empty set
        f.unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match="3 of the 3 videos"):
        datasets.load_video("MSVD", size=16)


def test_didemo_protocols_and_32_frames(env):
    base = env / "didemo"
    base.mkdir()
    (base / "test_data.json").write_text(
        json.dumps(
            [
                {"video": "10015567@N08_3655084291.mov", "description": "a dog jumps.", "times": [[0, 0]]},
                {"video": "10015567@N08_3655084291.mov", "description": "the dog lands.", "times": [[1, 1]]},
                {"video": "missing@N00_1.mp4", "description": "never downloaded.", "times": [[0, 0]]},
            ]
        )
    )
    _video(base / "videos" / "10015567@N08_3655084291.mp4", 40)
    with pytest.warns(datasets.DatasetWarning, match="DiDeMo: 1 of the 2 videos"):
        paragraph = datasets.load_video("DiDeMo", size=16, protocol="clip4clip")
    assert paragraph.frames.shape == (1, 32, 3, 16, 16)
    assert paragraph.captions == ["a dog jumps. the dog lands."] and list(paragraph.video_of_text) == [0]
    with pytest.warns(datasets.DatasetWarning):
        first = datasets.load_video("DiDeMo", size=16, frames=4)  # the paper's: the first description
    assert first.captions == ["a dog jumps."] and first.missing == ["missing@N00_1.mp4"]


def test_corrupt_and_missing_video(env):
    base = _msrvtt(env)
    (base / "videos" / "all" / "video7021.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    with pytest.raises(datasets.DatasetError, match=r"Cannot decode the video .*video7021\.mp4"):
        datasets.load_video("MSR-VTT", size=16)
    (base / "videos" / "all" / "video7021.mp4").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match=r"MSR-VTT: 1 of the 2 videos .*videos/all.*video7021"):
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


def test_check_opens_what_each_dataset_lists(env):
    """`info` only looks for the required paths; `check` opens everything they list."""
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(env / "cifar-10-batches-py" / "batches.meta", {"label_names": names})
    _pickle(env / "cifar-10-batches-py" / "test_batch", {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    assert datasets.info("CIFAR-10")["present"]  # the files are there ...
    r = datasets.check("CIFAR-10")  # ... but the pickle holds no CIFAR images
    assert not r["ok"] and r["problem_count"] == 1 and "not uint8 [N, 3072]" in r["problems"][0]
    _pickle(env / "cifar-10-batches-py" / "test_batch", {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})
    assert datasets.check("CIFAR-10") | {"problems": []} == {
        "name": "CIFAR-10",
        "present": True,
        "checked": 2,
        "problems": [],
        "problem_count": 0,
        "ok": True,
    }

    base = _msrvtt(env)
    assert datasets.check("MSR-VTT")["ok"] and datasets.check("MSR-VTT")["checked"] == 2
    (base / "videos" / "all" / "video7021.mp4").unlink()
    assert datasets.info("MSR-VTT")["present"]  # the split file and the folder are there
    r = datasets.check("MSR-VTT")
    assert not r["ok"] and r["checked"] == 1 and "1 of the 2 videos" in r["problems"][0] and "video7021" in r["problems"][0]
    (base / "videos" / "all" / "video7021.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(300))
    r = datasets.check("MSR-VTT")
    assert not r["ok"] and "video7021.mp4: cannot decode" in r["problems"][0]

    for code in ("AD", "FR"):
        _jpg(env / "country211" / "test" / code / "1.jpg", "red", size=(200, 150))
    assert datasets.check("Country-211")["ok"]
    whole = (env / "country211" / "test" / "FR" / "1.jpg").read_bytes()
    (env / "country211" / "test" / "FR" / "1.jpg").write_bytes(whole[: len(whole) // 2])  # a truncated download
    r = datasets.check("Country-211")
    assert not r["ok"] and r["checked"] == 2 and "FR/1.jpg: cannot decode" in r["problems"][0]
    assert datasets.check("DiDeMo") == {
        "name": "DiDeMo",
        "present": False,
        "checked": 0,
        "problems": [],
        "problem_count": 0,
        "ok": False,
    }  # absent: nothing opened

    runner = CliRunner()
    result = runner.invoke(app, ["data", "--check"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    row = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in datasets.names()}
    assert "DAMAGED" in row["MSR-VTT"] and "DAMAGED" in row["Country-211"] and "yes, 2 checked" in row["CIFAR-10"]
    assert "video7021.mp4: cannot decode" in result.output and "FR/1.jpg: cannot decode" in result.output
    plain = runner.invoke(app, ["data"])  # without --check: present, nothing opened
    assert plain.exit_code == 0 and "DAMAGED" not in plain.output
    result = runner.invoke(app, ["data", "--check", "--json"])
    assert result.exit_code == 1
    rows = {r["name"]: r for r in json.loads(result.output)["datasets"]}
    assert rows["CIFAR-10"]["check"]["ok"] and not rows["MSR-VTT"]["check"]["ok"] and rows["MSVD"]["check"] is None


class _Exploit:
    """A pickle payload that runs a command when it is loaded (what a hostile 'test_batch' holds)."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (os.system, (f"touch {self.mark}",))


def test_check_never_runs_code_from_a_data_pickle(env, tmp_path):
    """`ccs data --check` used `pickle.load` on the CIFAR batches and MSVD's captions: a pickle whose
    `__reduce__` calls os.system ran it. Those formats are read by an unpickler that admits only the
    types they hold, and the error names the refused file."""
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    mark = tmp_path / "pwned"
    _pickle(env / "cifar-10-batches-py" / "batches.meta", {"label_names": names})
    _pickle(env / "cifar-10-batches-py" / "test_batch", {"data": _Exploit(mark), "labels": [0, 1]})
    r = datasets.check("CIFAR-10")
    assert not mark.exists(), "checking the dataset ran the command inside its pickle"
    assert not r["ok"] and "refused" in r["problems"][0] and "test_batch" in r["problems"][0], r
    assert "posix.system" in r["problems"][0] or "os.system" in r["problems"][0], r
    result = CliRunner().invoke(app, ["data", "--check"])
    assert result.exit_code == 1 and not mark.exists()
    assert "refused to load" in result.output and "cifar-10-batches-py/test_batch" in result.output, result.output
    # what the real files hold still loads: numpy arrays written by protocol 2, byte strings, lists
    batch = {
        b"data": np.zeros((2, 3072), np.uint8),
        "labels": [0, 1],
        "filenames": [b"a.png", b"b.png"],
        "data": np.zeros((2, 3072), np.uint8),
    }
    _pickle(env / "cifar-10-batches-py" / "test_batch", batch)
    assert datasets.check("CIFAR-10")["ok"]
    # MSVD's raw-captions.pkl alike
    base = _msvd_copy(env)
    _pickle(base / "raw-captions.pkl", {"-4wsuPCjDBc_5_15": [["a", _Exploit(mark)]], "abc_1_2": [["x"]]})
    with pytest.raises(datasets.DatasetError, match="refused to load .*raw-captions.pkl"):
        datasets.load_video("MSVD", size=16, protocol="clip4clip")
    r = datasets.check("MSVD")
    assert not mark.exists() and not r["ok"] and "raw-captions.pkl" in r["problems"][0], r
