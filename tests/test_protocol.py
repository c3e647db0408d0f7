"""The project's evaluation protocol against the ecosystem's reference code, on a paper architecture
with random weights (ViT-B-32-OpenAI, nothing downloaded) and tiny dataset copies written here:

1. the prompts and class names `ccs.datasets` serves are clip-benchmark's (the files of the installed
   package, of which ccs/data holds copies);
2. zero-shot top-1 and per-image predictions of the project's path (`datasets.load_classification`,
   `evaluate.zero_shot_classifier`, `evaluate.image_embeddings`) equal clip_benchmark's own
   (`build_dataset`, `zero_shot_classifier`, `run_classification` and `evaluate`) on CIFAR-10 and
   Country-211, down to the preprocessed pixels;
3. R@K, median and mean rank of the project's retrieval (`datasets.load_video`,
   `evaluate.video_embeddings`, `evaluate.retrieval_report`) equal CLIP4Clip's metrics computed here
   from their definitions (its ``compute_metrics``, and for several captions a video
   ``tensor_text_to_video_metrics`` / ``tensor_video_to_text_sim``), with the frames embedded here
   through open_clip's own PIL preprocessing, on tiny MSR-VTT and MSVD copies under both protocols.

Speed: the text tower of the random model is run once per distinct prompt (a memo shared by both
sides) and only over each prompt's tokens up to its end-of-text token, which under the causal mask
gives the same end-of-text feature (checked below); Country-211's 211 x 5 prompts dominate the time.
"""

from __future__ import annotations

import json
import pickle
from importlib import resources

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ccs import datasets, evaluate, models
from ccs.evalset import PROTOCOLS

MODEL = "ViT-B-32-OpenAI"


_CUT = evaluate.encode_text  # the library's encoding, kept before a test routes it through the memo


class _Text:
    """The model's ``encode_text``, memoised per prompt (token row) and run only over the tokens up to
    each prompt's end-of-text token (`evaluate.encode_text`), so that clip_benchmark's code and ours
    encode each prompt once between them."""

    def __init__(self, model):
        self.model, self.memo = model, {}

    @torch.no_grad()
    def short(self, tokens: torch.Tensor) -> torch.Tensor:
        return _CUT(self.model, tokens)

    def __call__(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        keys = [row.numpy().tobytes() for row in tokens]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in self.memo}.values(), key=lambda i: int(tokens[i].argmax()))
        for start in range(0, len(todo), 64):  # similar lengths together
            rows = todo[start : start + 64]
            for i, emb in zip(rows, self.short(tokens[rows])):
                self.memo[keys[i]] = emb
        out = torch.stack([self.memo[k] for k in keys])
        return F.normalize(out, dim=-1) if normalize else out


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    model, preprocess, tokenizer = models.load(MODEL, untrained=True)
    torch.set_num_threads(2)
    text = _Text(model)
    probe = tokenizer(["a photo of a cat.", "a photo i took while visiting Saint Kitts and Nevis."])
    with torch.no_grad():  # the shortcut gives the full-context feature
        assert torch.allclose(text.short(probe), model.encode_text(probe), atol=2e-5)
    model.encode_text = text
    return model, preprocess, tokenizer


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CCS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


# ------------------------------------------------------------------------------ prompts and names


def _package_file(name: str) -> bytes:
    return (resources.files("clip_benchmark.datasets") / name).read_bytes()


def test_prompts_and_class_names_are_clip_benchmarks():
    for name in ("en_zeroshot_classification_templates.json", "en_classnames.json"):
        assert (resources.files("ccs") / "data" / f"clip_benchmark_{name}").read_bytes() == _package_file(name)
    cb_templates = json.loads(_package_file("en_zeroshot_classification_templates.json"))
    cb_names = json.loads(_package_file("en_classnames.json"))
    for name, key in {
        "CIFAR-10": "cifar10",
        "CIFAR-100": "cifar100",
        "Food-101": "food101",
        "Country-211": "country211",
        "Oxford-Pets": "pets",
        "Oxford-Pets-paper": "cifar10",
    }.items():
        ours = datasets.templates(name)
        assert [t.format("X") for t in ours] == [t.format(c="X") for t in cb_templates[key]], name
    assert len(datasets.templates("CIFAR-10")) == 18 and len(datasets.templates("Country-211")) == 5
    assert datasets.templates("Food-101") == ["a photo of {}, a type of food."]
    for name in ("ImageNet-A", "ImageNet-R"):  # open_clip's 80 = clip-benchmark's imagenet1k list
        assert sorted(t.format("X") for t in datasets.templates(name)) == sorted(
            t.format(c="X") for t in cb_templates["imagenet1k"]
        )
        assert len(datasets.classnames(name)) == 200
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES  # ImageNet-A/-R's names come from here

    assert cb_names["imagenet1k"] == list(IMAGENET_CLASSNAMES)  # CLIP's ImageNet names, in both packages
    assert datasets.classnames("Country-211") == cb_names["country211"]
    assert datasets.classnames("Oxford-Pets") == cb_names["pets"]
    assert datasets.classnames("CIFAR-10") is None  # read from the data, as clip-benchmark does


# ----------------------------------------------------------------------- zero-shot classification


def _tiny_cifar10(root, n=8):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batch = {
        "batch_label": "testing batch 1 of 1",
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "labels": [i % 10 for i in range(n)],
        "filenames": [f"{i}.png" for i in range(n)],
    }
    for name, obj in (("test_batch", batch), ("batches.meta", {"label_names": names})):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)


def _tiny_country211(root):
    """The first three of the 211 folders (so torchvision's folder index is the class index, which
    clip_benchmark assumes), two noise JPEGs each, in shapes that need a resize and a crop."""
    rng = np.random.default_rng(2)
    for code in datasets.COUNTRY211_CODES[:3]:
        for j, shape in enumerate(((150, 200, 3), (260, 180, 3))):
            path = root / "country211" / "test" / code / f"{j}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path, quality=90)


def _clip_benchmark_run(name, root, model, preprocess, tokenizer, monkeypatch):
    """clip_benchmark's zero-shot classification of the copy at `root`, as its CLI runs it (amp off on
    the CPU): its dataset builder, classifier, logits and metrics."""
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as zsc

    def accuracy(output, target, topk=(1,)):  # zsc.accuracy with .item(): its float() of a 1-element
        pred = output.topk(max(topk), 1, True, True)[1].t()  # array is an error under numpy 2
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [float(correct[:k].reshape(-1).float().sum().item()) / len(target) for k in topk]

    monkeypatch.setattr(zsc, "accuracy", accuracy)
    ds = build_dataset(name, root=str(root), transform=preprocess, split="test", download=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), shuffle=False, num_workers=0)
    classifier = zsc.zero_shot_classifier(model, tokenizer, ds.classes, ds.templates, "cpu", amp=False)
    logits, target = zsc.run_classification(model, classifier, loader, "cpu", amp=False)
    metrics = zsc.evaluate(model, loader, tokenizer, ds.classes, ds.templates, "cpu", amp=False)
    pixels = torch.stack([ds[i][0] for i in range(len(ds))])
    return ds, logits, target, metrics, pixels


def _ours(name, model, tokenizer):
    es, classes, templates = datasets.load_classification(name)
    clf = evaluate.zero_shot_classifier(model, tokenizer, classes, templates)
    emb = evaluate.image_embeddings(model, es.images, batch_size=len(es.images))
    labels = es.labels[es.name]
    return es, classes, templates, clf, emb, labels


@pytest.mark.parametrize("name, cb_name", [("CIFAR-10", "cifar10"), ("Country-211", "country211")])
def test_zero_shot_equals_clip_benchmark(name, cb_name, clip, root, monkeypatch):
    model, preprocess, tokenizer = clip
    if name == "CIFAR-10":
        _tiny_cifar10(root)
        # torchvision's CIFAR10 insists on the md5 of the full download (all training batches too)
        import torchvision.datasets.cifar as tv_cifar

        monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
        monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    else:
        _tiny_country211(root)
    # ours first, through the memo too: it encodes the prompts in large batches, which fills it fastest
    monkeypatch.setattr(evaluate, "encode_text", lambda m, tokens: m.encode_text(tokens))
    es, classes, templates, clf, emb, labels = _ours(name, model, tokenizer)
    ds, logits, target, metrics, pixels = _clip_benchmark_run(cb_name, root, model, preprocess, tokenizer, monkeypatch)

    # the same prompts for the same classes, the same labels, the same pixels into the model
    assert [t.format(c) for c in classes for t in templates] == [t.format(c=c) for c in ds.classes for t in ds.templates]
    assert np.array_equal(labels, target.numpy())
    assert torch.equal(models.tensor_preprocess(model)(es.images), pixels)
    # the same scores, the same prediction for every image, the same top-1
    ours_logits = 100 * emb @ clf.T
    gap = float((ours_logits - logits).abs().max())
    assert gap < 1e-3, gap
    top2 = logits.topk(2, dim=1).values
    assert ((top2[:, 0] - top2[:, 1]) > 10 * gap).all()  # no near-tie: every prediction below is decided
    pred = ours_logits.argmax(1)
    assert torch.equal(pred, logits.argmax(1))
    top1 = evaluate.accuracy(emb, clf, labels)
    assert top1 == pytest.approx(metrics["acc1"], abs=1e-9)
    assert evaluate.zero_shot_scores(emb, clf, labels)["correct"].tolist() == (pred == target).float().tolist()
    assert len(classes) == (10 if name == "CIFAR-10" else 211)


# --------------------------------------------------------------------------------- video retrieval


def _write_video(path, levels):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(levels))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for level in levels:
            frame = np.clip(rng.normal(level, 40, (64, 96, 3)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _tiny_msrvtt(root):
    base = root / "msrvtt"
    (base / "MSRVTT_JSFUSION_test.csv").parent.mkdir(parents=True)
    captions = ["a man sings on a stage", "a dog runs in the park", "a car drives at night"]
    (base / "MSRVTT_JSFUSION_test.csv").write_text(
        "key,vid_key,video_id,sentence\n" + "".join(f"ret{i},msr{i},video{i},{c}\n" for i, c in enumerate(captions))
    )
    for i in range(len(captions)):
        _write_video(base / "videos" / "all" / f"video{i}.mp4", [40 * i + 10 * f for f in range(6)])


def _tiny_msvd(root):
    base = root / "msvd"
    base.mkdir()
    ids = ["aa_1_2", "bb_3_4", "cc_5_6"]
    (base / "test_list.txt").write_text("\n".join(ids) + "\n")
    # chosen so that, for the seeded random model, several of aa's captions outscore cc's best caption for
    # cc: there CLIP4Clip's video -> text ranking (by videos) and ranking captions differ (checked below)
    caps = {
        "aa_1_2": ["a kitten", "a small cat plays", "a dog"],
        "bb_3_4": ["a man talks"],
        "cc_5_6": ["people dance", "a group is dancing"],
    }
    (base / "AllVideoDescriptions.txt").write_text("".join(f"{v} {c}\n" for v in ids for c in caps[v]))
    for i, v in enumerate(ids):
        _write_video(base / "YouTubeClips" / f"{v}.avi", [200 - 45 * i - 5 * f for f in range(6)])


def _c4c_compute_metrics(x):
    """CLIP4Clip's metrics.compute_metrics: x [queries, candidates], the correct one on the diagonal."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, None]
    ind = np.where(sx - d == 0)[1]
    return {
        "R1": float(np.sum(ind == 0)) * 100 / len(ind),
        "R5": float(np.sum(ind < 5)) * 100 / len(ind),
        "R10": float(np.sum(ind < 10)) * 100 / len(ind),
        "MedianR": np.median(ind) + 1,
        "MeanR": np.mean(ind) + 1,
    }


def _c4c_multi_sentence(sim, video_of_text):
    """CLIP4Clip's evaluation with several captions a video: the [T, V] matrix split per video and
    padded with -inf into [V, max captions, V]; text -> video by tensor_text_to_video_metrics (double
    argsort), video -> text by compute_metrics(tensor_video_to_text_sim(...)) (each group's max)."""
    groups = [sim[video_of_text == v] for v in range(sim.shape[1])]
    longest = max(len(g) for g in groups)
    stacked = torch.tensor(np.stack([np.concatenate([g, np.full((longest - len(g), sim.shape[1]), -np.inf)]) for g in groups]))
    # tensor_text_to_video_metrics
    per_caption = stacked.permute(1, 0, 2)
    ranks = torch.argsort(torch.argsort(per_caption, dim=-1, descending=True), dim=-1)
    ranks = torch.flatten(torch.diagonal(ranks, dim1=1, dim2=2))
    valid = ranks[~torch.isinf(torch.flatten(torch.diagonal(stacked, dim1=0, dim2=2)))]
    t2v = {f"R{k}": float(torch.sum(valid < k) * 100 / len(valid)) for k in (1, 5, 10)}
    t2v |= {"MedianR": float(torch.median(valid + 1)), "MeanR": float(np.mean(valid.numpy() + 1))}
    # tensor_video_to_text_sim, then compute_metrics
    v2t = _c4c_compute_metrics(torch.squeeze(stacked.max(dim=1, keepdim=True).values).T.numpy())
    return t2v, v2t


def _reference_frames(model, preprocess, frames):
    """Every frame through open_clip's PIL preprocessing and the image tower, normalised: [V, F, D]."""
    pil = [Image.fromarray(f.permute(1, 2, 0).numpy()) for clip in frames for f in clip]
    with torch.no_grad():
        emb = F.normalize(model.encode_image(torch.stack([preprocess(p) for p in pil])), dim=-1)
    return emb.view(*frames.shape[:2], -1)


def _reference_embeddings(frame_emb, model, tokenizer, captions, protocol):
    """Clips: the frames' mean (renormalised under clip4clip, as the paper's code does not); captions
    through the text tower, normalised."""
    video = frame_emb.mean(1)
    if protocol == "clip4clip":
        video = video / video.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokenizer(captions)), dim=-1)
    return text.numpy().astype(np.float64), video.numpy().astype(np.float64)


def _compare(ours: dict, ref: dict, ranks=None):
    """R@K and the mean rank equal; the median rank too, except that CLIP4Clip's several-captions
    text -> video median is torch.median's, the lower of the two middle ranks for an even number of
    queries (ours is the usual median, their mean): then `ranks` is given and that is checked instead."""
    for k in (1, 5, 10):
        assert 100 * ours[f"R@{k}"] == pytest.approx(ref[f"R{k}"], abs=1e-4), k  # CLIP4Clip: float32 torch
    assert ours["MnR"] == pytest.approx(ref["MeanR"])
    if ranks is None:
        assert ours["MdR"] == pytest.approx(ref["MedianR"])
    else:
        assert ref["MedianR"] == np.sort(ranks)[(len(ranks) - 1) // 2] and ours["MdR"] == np.median(ranks)


def test_retrieval_equals_clip4clip_metrics(clip, root):
    model, preprocess, tokenizer = clip
    _tiny_msrvtt(root)
    _tiny_msvd(root)
    for name in ("MSR-VTT", "MSVD"):
        reference_frames = None
        for protocol in PROTOCOLS:
            vs = datasets.load_video(name, protocol=protocol, frames=2)
            text = evaluate.text_embeddings(model, tokenizer, vs.captions)
            video = evaluate.video_embeddings(model, vs.frames, protocol=protocol)
            report = evaluate.retrieval_report(text, video, vs.video_of_text)
            assert vs.full and report["text_to_video"]["gallery"] == report["video_to_text"]["gallery"] == 3

            if reference_frames is None:  # the frames are the same under both protocols
                reference_frames = _reference_frames(model, preprocess, vs.frames)
            t, v = _reference_embeddings(reference_frames, model, tokenizer, vs.captions, protocol)
            assert np.allclose(video.numpy(), v, atol=1e-5) and np.allclose(text.numpy(), t, atol=1e-5)
            sim = t @ v.T
            assert len(np.unique(sim.round(9))) == sim.size  # no ties: CLIP4Clip's and our tie rules agree
            several = name == "MSVD" and protocol == "clip4clip"
            assert len(vs.captions) == (6 if several else 3)
            if several:
                t2v, v2t = _c4c_multi_sentence(sim, vs.video_of_text)
                # the case the convention matters: a video's best caption ranked among all the captions
                # instead (another video's several captions each counting) gives other ranks here
                own = vs.video_of_text[:, None] == np.arange(3)[None, :]
                best = np.where(own, sim, -np.inf).max(0)
                among_captions = 1 + ((sim >= best[None, :]) & ~own).sum(0)
                assert among_captions.tolist() != report["ranks"]["video_to_text"].tolist()
            else:
                t2v, v2t = _c4c_compute_metrics(sim), _c4c_compute_metrics(sim.T)
            _compare(report["text_to_video"], t2v, report["ranks"]["text_to_video"] if several else None)
            _compare(report["video_to_text"], v2t)


# ------------------------------------------------------------------------ the paper-vs-book page


def test_the_paper_tables_page_says_which_protocol_made_each_number(tmp_path):
    from ccs import paper_tables

    runs = tmp_path / "runs" / "ViT-B-32-OpenAI"
    runs.mkdir(parents=True)
    (runs / "pruning.json").write_text(json.dumps({"weights": "trained", "eval_images": 1000}))
    (runs / "video.json").write_text(json.dumps({"weights": "trained", "protocol": "clip4clip"}))
    text = paper_tables.page(tmp_path / "runs")
    assert "the first caption of each video ranks every video of the" in text  # the paper's protocol
    assert "word of its file name (35 classes)" in text  # its Pets
    said = {line.split("*", 2)[1]: line for line in text.splitlines() if line.startswith("*")}
    assert (
        "How this run measured: zero-shot numbers on 1000 images of each test split; video retrieval by the `clip4clip` protocol."
    ) in said["ViT-B-32-OpenAI"]
    assert "ViT-B-16-OpenAI" not in said  # no run of it: nothing to say how it was measured
