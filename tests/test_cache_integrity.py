"""Damaged caches are detected, reported with their path and recomputed: the decomposition folders
(truncated arrays, invalid meta.json, same-size corruption caught by the checksums, resumes), the
pool text embeddings and downloads, and the per-text sentence embeddings of the offline labeler."""

import hashlib
import json
import re
import warnings

import numpy as np
import pytest
import torch

from ccs import decompose as dc
from ccs import llm, models, pools, world
from ccs.decompose import streaming
from ccs.pools import loading
from ccs.llm import embedding

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return models.load("ccs-tiny", untrained=True).model


@pytest.fixture(scope="module")
def images():
    return world.sample(10, 0).images


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _arrays(d: dc.Decomposition) -> dict[str, np.ndarray]:
    return {name: np.array(d.array(name)) for name in dc.ARRAYS}  # copies: no memmap stays open


def _no_warning(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", dc.CacheWarning)
        return fn(*a, **kw)


@pytest.fixture(scope="module")
def fresh(tiny, images, tmp_path_factory):
    """The arrays of a decomposition computed from scratch, in a folder of its own."""
    return _arrays(dc.stream(tiny, images, tmp_path_factory.mktemp("fresh"), batch_size=4, progress=False))


def _truncate(size):
    def corrupt(folder):
        f = folder / "heads.npy"
        with open(f, "r+b") as fh:
            fh.truncate(size if size > 0 else f.stat().st_size + size)
        return f, "truncated" if size < 0 else "unreadable .npy header"

    return corrupt


def _zero_region(folder):
    """Zero bytes inside the data of heads.npy, keeping the file's size (and so its shape)."""
    f = folder / "heads.npy"
    size = f.stat().st_size
    with open(f, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(bytes(4096))
    assert f.stat().st_size == size
    return f, "checksum mismatch"


def _bad_meta(folder):
    f = folder / "meta.json"
    f.write_text('{"format": 2, "key": ')
    return f, "invalid JSON"


def _meta_done(folder):
    """A meta.json that claims fewer images than the checksums were taken over."""
    f = folder / "meta.json"
    meta = json.loads(f.read_text())
    f.write_text(json.dumps({**meta, "done": meta["done"] - 3}))
    return folder / "heads.npy", "checksum mismatch"


def _missing_rest(folder):
    f = folder / "rest.npy"
    f.unlink()
    return f, "missing"


@pytest.mark.parametrize(
    "corrupt",
    [_truncate(-1000), _truncate(40), _zero_region, _bad_meta, _meta_done, _missing_rest],
    ids=["truncated", "truncated-header", "zeroed-same-size", "bad-meta", "meta-done-edited", "missing-array"],
)
def test_damaged_decomposition_is_reported_and_recomputed(tiny, images, fresh, cache, corrupt):
    a = dc.cached(tiny, "ccs-tiny", images, batch_size=4, progress=False)
    assert a.meta["done"] == 10 and a.verify() is None
    assert set(a.meta["crc32"]) == set(dc.ARRAYS) and a.meta["format"] == dc.FORMAT
    for name, arr in _arrays(a).items():
        np.testing.assert_array_equal(arr, fresh[name])
    file, what = corrupt(a.path)
    with pytest.warns(dc.CacheWarning, match=re.escape(str(file)) + ".*" + what) as record:
        b = dc.cached(tiny, "ccs-tiny", images, batch_size=4, progress=False)
    assert "Recomputing" in str(record[0].message) and b.path == a.path
    assert b.verify() is None
    for name, arr in _arrays(b).items():
        np.testing.assert_array_equal(arr, fresh[name])
    _no_warning(dc.cached, tiny, "ccs-tiny", images, batch_size=4, progress=False)  # healed


def test_intact_folder_is_reused_untouched(tiny, images, cache, monkeypatch):
    a = dc.cached(tiny, "ccs-tiny", images, batch_size=4, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in a.path.iterdir()}
    monkeypatch.setattr(streaming, "components", lambda *a, **kw: pytest.fail("recomputed"))
    b = _no_warning(dc.cached, tiny, "ccs-tiny", images, batch_size=4, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in b.path.iterdir()} == stamps


class Interrupt(Exception):
    pass


def _interrupted(monkeypatch, tiny, images, out, after):
    """Stream `images` into `out`, interrupted after `after` batches of 4."""
    real = streaming._batches

    def batches(*args, **kw):
        for k, x in enumerate(real(*args, **kw)):
            if k == after:
                raise Interrupt
            yield x

    monkeypatch.setattr(streaming, "_batches", batches)
    with pytest.raises(Interrupt):
        dc.stream(tiny, images, out, batch_size=4, progress=False, key="k")
    monkeypatch.setattr(streaming, "_batches", real)
    return json.loads((out / "meta.json").read_text())


def _counting(monkeypatch):
    seen = []
    real = streaming.components

    def components(model, x, *a, **kw):
        seen.append(len(x))
        return real(model, x, *a, **kw)

    monkeypatch.setattr(streaming, "components", components)
    return seen


def test_interrupted_stream_resumes_after_its_checks(tiny, images, fresh, tmp_path, monkeypatch):
    meta = _interrupted(monkeypatch, tiny, images, tmp_path / "r", after=2)
    assert meta["done"] == 8
    seen = _counting(monkeypatch)
    d = _no_warning(dc.stream, tiny, images, tmp_path / "r", batch_size=4, progress=False, key="k")
    assert seen == [2] and d.meta["done"] == 10 and d.verify() is None  # only what was missing
    for name, arr in _arrays(d).items():
        np.testing.assert_array_equal(arr, fresh[name])


@pytest.mark.parametrize("corrupt", [_zero_region, _truncate(-100), _bad_meta])
def test_damaged_partial_stream_restarts_from_scratch(tiny, images, fresh, tmp_path, monkeypatch, corrupt):
    """The rows written before an interruption are checked too (the running checksums cover them):
    a damaged partial folder is rebuilt, not resumed on top of bad rows."""
    out = tmp_path / "r"
    _interrupted(monkeypatch, tiny, images, out, after=2)
    if corrupt is _zero_region:  # zero the first rows (the middle of the file is not written yet)
        with open(out / "heads.npy", "r+b") as fh:
            fh.seek(200)
            fh.write(bytes(2000))
        file, what = out / "heads.npy", "checksum mismatch"
    else:
        file, what = corrupt(out)
    seen = _counting(monkeypatch)
    with pytest.warns(dc.CacheWarning, match=re.escape(str(file)) + ".*" + what):
        d = dc.stream(tiny, images, out, batch_size=4, progress=False, key="k")
    assert seen == [4, 4, 2] and d.verify() is None
    for name, arr in _arrays(d).items():
        np.testing.assert_array_equal(arr, fresh[name])


def test_other_settings_rebuild_silently(tiny, images, tmp_path):
    out = tmp_path / "s"
    dc.stream(tiny, images, out, batch_size=4, progress=False, key="a")
    d = _no_warning(dc.stream, tiny, images[:3], out, batch_size=4, progress=False, key="b")
    assert d.heads.shape[0] == 3 and d.verify() is None
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "format": 1}))  # an older format: rebuilt
    d = _no_warning(dc.stream, tiny, images[:3], out, batch_size=4, progress=False, key="b")
    assert d.meta["format"] == dc.FORMAT


def test_file_damaged_after_it_was_handed_out_names_the_folder(tiny, images, tmp_path):
    d = dc.stream(tiny, images[:3], tmp_path / "h", batch_size=4, progress=False)
    (d.path / "mlps.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(dc.CacheCorruptError, match=re.escape(str(d.path)) + ".*[Dd]elete"):
        d.mlps
    assert "mlps.npy" in d.verify()


# --- pool text embeddings ---------------------------------------------------------------------


class TextModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)))
        self.calls = 0

    def encode_text(self, tokens):
        self.calls += 1
        return self.w[tokens].sum(1)


def _tok(texts):
    return torch.tensor([[len(t) % 50, len(t.split()) % 50] for t in texts])


def _pool_file(cache):
    files = list((cache / "text_embeddings" / "fake").glob("*.npz"))
    assert len(files) == 1
    return files[0]


def _zero_inside(f, emb):
    """Zero 64 bytes of the stored embeddings inside the archive (same size, valid zip layout)."""
    data = bytearray(f.read_bytes())
    at = data.find(emb.tobytes()[:64])
    assert at > 0
    data[at : at + 64] = bytes(64)
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "same-size", "wrong-rows", "zeroed"])
def test_pool_embedding_cache_is_checked(cache, damage):
    model = TextModel()
    pool = pools.Pool("p", tuple(f"text number {i} " + "x" * i for i in range(20)))
    a = pools.embed(pool, "fake", model, _tok)
    f = _pool_file(cache)
    with np.load(f) as z:
        assert set(z.files) == {"embeddings", "crc32"}
    if damage == "truncated":
        f.write_bytes(f.read_bytes()[:300])
    elif damage == "same-size":
        size = f.stat().st_size
        with np.load(f) as z:
            emb, crc = z["embeddings"], z["crc32"]
        emb = emb.copy()
        emb[3, 2] = -emb[3, 2]  # a flipped sign keeps the norm; only the checksum sees it
        with open(f, "wb") as fh:
            np.savez(fh, embeddings=emb, crc32=crc)
        assert f.stat().st_size == size
    elif damage == "wrong-rows":
        with open(f, "wb") as fh:
            np.savez(fh, embeddings=a[:5], crc32=np.uint32(0))
    else:  # the zip's own CRC of the member catches it as it is read
        _zero_inside(f, a)
    what = {"truncated": "unreadable", "same-size": "checksum mismatch", "wrong-rows": "expected", "zeroed": "CRC"}[damage]
    with pytest.warns(dc.CacheWarning, match=re.escape(str(f)) + ".*" + what):
        b = pools.embed(pool, "fake", model, _tok)
    assert model.calls == 2 and np.array_equal(a, b)
    assert np.array_equal(_no_warning(pools.embed, pool, "fake", model, _tok), a)
    assert model.calls == 2


def test_pool_embeddings_of_the_previous_format_are_replaced(cache):
    model = TextModel()
    pool = pools.Pool("p", ("a dog", "a cat"))
    a = pools.embed(pool, "fake", model, _tok)
    f = _pool_file(cache)
    old = f.with_suffix(".npy")
    np.save(old, np.zeros((2, 8), np.float32))  # an unchecked cache of the old format
    f.unlink()
    assert np.array_equal(_no_warning(pools.embed, pool, "fake", model, _tok), a)
    assert model.calls == 2 and not old.exists() and f.exists()


def test_damaged_pool_download(cache, monkeypatch):
    body = b"a photo of a dog\nan image of a beach\n"
    calls = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def read(self):
            return body

    monkeypatch.setattr(loading.urllib.request, "urlopen", lambda url, timeout: calls.append(url) or Response())
    pool = pools.load("textspan", download=True)
    path = loading._url_file(pools.TEXTSPAN_URL)
    path.write_bytes(body[:10])  # truncated on disk
    with pytest.raises(pools.PoolNotAvailableError, match=re.escape(str(path)) + ".*truncated.*Delete"):
        pools.load("textspan")
    with pytest.warns(dc.CacheWarning, match=re.escape(str(path))):
        again = pools.load("textspan", download=True)
    assert again.texts == pool.texts and len(calls) == 2
    assert _no_warning(pools.load, "textspan").texts == pool.texts


# --- per-text sentence embeddings of the offline labeler -----------------------------------------


class FakeSentenceModel:
    """Deterministic unit vectors per text (the real model is not needed to test the cache)."""

    def __init__(self):
        self.encoded = []

    def encode(self, texts, **kw):
        self.encoded.extend(texts)
        out = []
        for t in texts:
            v = np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384)
            out.append(v / np.linalg.norm(v))
        return np.array(out)


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "not-unit", "wrong-shape", "nan", "empty"])
def test_damaged_sentence_embedding_file_is_rewritten(cache, monkeypatch, damage):
    model = FakeSentenceModel()
    monkeypatch.setattr(embedding, "_sentence_model", lambda: model)
    monkeypatch.setattr(embedding, "_EMBEDDINGS", {})
    texts = ["a red circle", "a blue square"]
    good = llm.embed(texts)
    f = embedding._embedding_dir() / f"{hashlib.sha256(texts[0].encode()).hexdigest()[:32]}.npy"
    assert np.array_equal(np.load(f), good[0])
    size = f.stat().st_size
    if damage == "truncated":
        f.write_bytes(f.read_bytes()[: size - 100])
    elif damage == "zeroed":  # same size, valid header, all-zero vector
        with open(f, "r+b") as fh:
            fh.seek(size - 384 * 4)
            fh.write(bytes(384 * 4))
    elif damage == "not-unit":
        np.save(f, 0.5 * good[0])
    elif damage == "wrong-shape":
        np.save(f, good[0][:100])
    elif damage == "nan":
        np.save(f, np.full(384, np.nan, np.float32))
    else:
        f.write_bytes(b"")
    monkeypatch.setattr(embedding, "_EMBEDDINGS", {})  # a new session: read from disk
    model.encoded.clear()
    with pytest.warns(dc.CacheWarning, match=re.escape(str(f))):
        again = llm.embed(texts)
    assert model.encoded == [texts[0]] and np.array_equal(again, good)
    assert np.array_equal(np.load(f), good[0])  # rewritten
    monkeypatch.setattr(embedding, "_EMBEDDINGS", {})
    assert np.array_equal(_no_warning(llm.embed, texts), good) and model.encoded == [texts[0]]


# --- the pruning pages' embeddings and classifiers (issue 22) ------------------------------------------


def _counting_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: calls.append(name) or real(*a, **kw))
    return calls


def _zero_4k(f):
    """Zero 4 KB in the middle of the file (its size unchanged), as a damaged disk page would."""
    size = f.stat().st_size
    with open(f, "r+b") as fh:
        fh.seek(max(0, size // 2 - 2048))
        fh.write(bytes(min(4096, size)))
    assert f.stat().st_size == size
    return "unreadable"


def _rewrite_same_size(f):
    """Rewrite the stored array with one value changed and the old checksum (a valid archive)."""
    size = f.stat().st_size
    with np.load(f) as z:
        array, crc = z["array"].copy(), z["crc32"]
    array.reshape(-1)[3] = -array.reshape(-1)[3]
    with open(f, "wb") as fh:
        np.savez(fh, array=array, crc32=crc)
    assert f.stat().st_size == size
    return "checksum mismatch"


@pytest.mark.parametrize("damage", [_zero_4k, _rewrite_same_size], ids=["zeroed-4k", "same-size-rewrite"])
def test_damaged_pruning_cache_is_reported_and_recomputed(tiny, images, cache, monkeypatch, damage):
    """The pruning pages' image embeddings and zero-shot classifiers are cached with checksums: a
    damaged file (same size or not) is reported with its path and recomputed, never used."""
    from ccs import evaluate, pruning

    tok = models.load("ccs-tiny", untrained=True).tokenizer
    tasks = {k: v for k, v in world.tasks().items() if k in ("shape", "colour")}
    emb = pruning.embeddings("ccs-tiny", tiny, images)
    clfs = pruning.classifiers("ccs-tiny", tiny, tok, tasks)
    files = sorted((cache / "arrays").rglob("*.npz"))
    assert len(files) == 3  # one embedding, two classifiers
    assert torch.equal(emb, evaluate.image_embeddings(tiny, images))
    embedded = _counting_calls(monkeypatch, evaluate, "image_embeddings")
    classified = _counting_calls(monkeypatch, evaluate, "zero_shot_classifier")
    for f in files:
        what = damage(f)
    with pytest.warns(dc.CacheWarning) as record:
        emb2 = pruning.embeddings("ccs-tiny", tiny, images)
        clfs2 = pruning.classifiers("ccs-tiny", tiny, tok, tasks)
    messages = [str(w.message) for w in record if issubclass(w.category, dc.CacheWarning)]
    assert len(messages) == 3
    for f in files:
        assert any(re.search(re.escape(str(f)) + ".*" + what + ".*Recomputing", m) for m in messages), messages
    assert embedded == ["image_embeddings"] and classified == ["zero_shot_classifier"] * 2
    assert torch.equal(emb2, emb) and all(torch.equal(clfs2[k], clfs[k]) for k in tasks)
    again = _no_warning(pruning.embeddings, "ccs-tiny", tiny, images)  # healed: read, not recomputed
    assert torch.equal(again, emb) and embedded == ["image_embeddings"]


# --- a full disk (issue 22) ----------------------------------------------------------------------


def test_full_disk_before_decomposing_is_an_error_naming_the_folder(tiny, images, tmp_path, monkeypatch):
    """The arrays' space is reserved when they are created: a disk without room is a DiskFullError
    naming the folder and the space needed before any image is decomposed, and nothing is left."""
    import errno

    from ccs import cache as cache_module

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.os, "posix_fallocate", full, raising=False)
    seen = _counting(monkeypatch)
    out = tmp_path / "d"
    with pytest.raises(cache_module.DiskFullError) as failure:
        dc.stream(tiny, images, out, batch_size=4, progress=False)
    message = str(failure.value)
    assert str(out) in message and "10 images" in message and "needs" in message and "free" in message
    assert failure.value.errno == errno.ENOSPC and seen == [] and list(out.iterdir()) == []


def test_arrays_are_allocated_not_sparse(tiny, images, tmp_path, monkeypatch):
    """Every block of a decomposition's arrays is allocated on disk when they are created, before
    any row is written (a sparse file is what a full disk turned into a SIGBUS)."""
    meta = _interrupted(monkeypatch, tiny, images, tmp_path / "a", after=0)
    assert meta["done"] == 0
    for name in dc.ARRAYS:
        st = (tmp_path / "a" / f"{name}.npy").stat()
        assert st.st_size > 128 and st.st_blocks * 512 >= st.st_size, name


def test_a_failed_small_write_names_the_file_and_leaves_no_temporary_file(tmp_path):
    import errno

    from ccs import cache as cache_module

    def writer(f):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "answer.json"
    with pytest.raises(cache_module.DiskFullError, match=re.escape(str(target)) + ".*needs"):
        cache_module.write_atomic(target, writer, size=100)
    assert list(tmp_path.iterdir()) == []
    gone = tmp_path / "gone" / "x.json"  # any other failure names the file too (root writes anywhere)
    with pytest.raises(OSError, match="cannot write " + re.escape(str(gone)) + ": No such file"):
        cache_module.write_atomic(gone, b"{}")


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB tmpfs (needs the right to mount: root; elsewhere the tests above cover the same code
    with a simulated full disk)."""
    import subprocess

    folder = tmp_path / "tmpfs"
    folder.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(folder)], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_decomposing_onto_a_full_disk_is_an_error_line_not_sigbus(full_disk):
    """`ccs textspan` with its cache on a 1 MB disk: one `error:` line naming the decomposition's
    folder and the space it needs (it was a SIGBUS, exit 135, with no message)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    ccs = Path(sys.executable).parent / "ccs"
    p = subprocess.run(
        [str(ccs), "textspan", "--images", "256"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CCS_CACHE": str(full_disk), "TQDM_DISABLE": "1"},
    )
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("error: not enough disk space for the decomposition of 256 images")
    assert str(full_disk / "decompose") in line and "needs" in line and "free" in line
    assert not [f for f in full_disk.rglob("*") if f.is_file() and f.suffix == ".npy"]


def test_small_files_onto_a_full_disk_name_their_path(full_disk, monkeypatch):
    """Sentence embeddings, LLM answers and pool embeddings written to a full disk: an error naming
    the file and the space it needs, and no (0-byte) temporary file left behind."""
    from ccs import cache as cache_module

    monkeypatch.setenv("CCS_CACHE", str(full_disk))
    monkeypatch.setattr(embedding, "_sentence_model", lambda: FakeSentenceModel())
    monkeypatch.setattr(embedding, "_EMBEDDINGS", {})
    folder = embedding._embedding_dir()
    with open(full_disk / "filler", "wb") as f:  # fill the disk
        try:
            while True:
                f.write(bytes(1 << 16))
                f.flush()
        except OSError:
            pass
    with pytest.raises(cache_module.DiskFullError) as failure:
        llm.embed(["a red circle"])
    assert str(folder) in str(failure.value) and ".npy" in str(failure.value) and "needs" in str(failure.value)
    responses = llm.ResponseCache(full_disk / "llm")
    with pytest.raises(cache_module.DiskFullError, match=re.escape(str(full_disk / "llm" / "k.json"))):
        responses.put("k", {"answer": 1, "padding": "x" * 8192})
    pool = pools.Pool("p", tuple(f"text number {i}" for i in range(2000)))
    with pytest.raises(cache_module.DiskFullError, match=re.escape(str(full_disk / "text_embeddings")) + ".*needs"):
        pools.embed(pool, "fake", TextModel(), _tok)
    assert not list(full_disk.rglob(".tmp-*")) and not list(full_disk.rglob("*.part*"))
    assert not list((full_disk / "llm").iterdir()) and not list((full_disk / "text_embeddings").rglob("*.npz"))
