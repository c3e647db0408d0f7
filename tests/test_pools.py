"""Description pools: the world pool's size and ground truth, pool files, URLs, embedding cache."""

import re

import numpy as np
import pytest
import torch

from ccs import pools
from ccs.pools import loading

VOCAB = {  # a stand-in for ccs.world.VOCAB: the generator must only need a dict like this
    "shape": ["circle", "square", "triangle", "star", "heart", "cross"],
    "colour": ["red", "green", "blue", "yellow", "purple", "orange"],
    "size": ["large", "small"],
    "texture": ["plain", "striped"],
    "position": ["top left", "center", "bottom right", "middle left"],
    "scene": ["grass", "snow", "water", "night"],
    "count": ["one", "two", "three"],
    "motion": ["left", "right"],
}


def _has(text, phrase):
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


@pytest.mark.parametrize("vocab", [VOCAB, None], ids=["stand-in", "world"])
def test_world_pool_is_large_distinct_and_single_concept(vocab):
    if vocab is None:
        vocab = pytest.importorskip("ccs.world").VOCAB
    pool = pools.world(vocab)
    df = pool.frame()
    assert len(pool) >= 1000 and df.text.is_unique
    assert set(df.concept[df.in_world]) == set(vocab)
    assert (~df.in_world).sum() >= 300  # things the world does not contain
    values = [(c, v) for c, vs in vocab.items() for v in vs]
    for text, concept, value, in_world in pool.frame().itertuples(index=False):
        if in_world:
            assert _has(text, value), text
        # no line names a value of another concept (unless it is part of its own value)
        for c, v in values:
            if c != concept and not (in_world and _has(value, v)):
                assert not _has(text, v), (text, c, v)


def test_combos_are_opt_in_and_multi_concept():
    assert not any("+" in c for c in pools.world(VOCAB).concepts)
    pool = pools.world(VOCAB, combos=30, seed=1)
    combos = [(t, c) for t, c in zip(pool.texts, pool.concepts) if "+" in c]
    assert len(combos) == 30 and pool.name == "world+30"
    assert pool.texts == pools.world(VOCAB, combos=30, seed=1).texts  # deterministic


def test_pool_files_round_trip(tmp_path):
    pool = pools.world(VOCAB)
    back = pools.read(pools.write(pool, tmp_path / "w.tsv"))
    assert back == pools.Pool("w", pool.texts, pool.concepts, pool.values, pool.in_world)
    (tmp_path / "plain.txt").write_text("a dog\n\n  a cat \na tree\n")
    txt = pools.load(str(tmp_path / "plain.txt"))
    assert txt.texts == ("a dog", "a cat", "a tree") and txt.concepts is None and txt.name == "plain"
    with pytest.raises(pools.PoolNotAvailableError, match="not a file"):
        pools.load(str(tmp_path / "missing.txt"))


def test_urls_only_when_asked_cached_and_clear_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    with pytest.raises(pools.PoolNotAvailableError, match="ccs pool fetch textspan"):
        pools.load("textspan")
    calls = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def read(self):
            return b"a photo of a dog\nan image of a beach\n"

    def urlopen(url, timeout):
        calls.append(url)
        return Response()

    monkeypatch.setattr(loading.urllib.request, "urlopen", urlopen)
    pool = pools.load("textspan", download=True)
    assert pool.texts == ("a photo of a dog", "an image of a beach") and pool.name == "textspan"
    assert pools.load("textspan").texts == pool.texts and calls == [pools.TEXTSPAN_URL]

    def offline(url, timeout):
        raise loading.urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(loading.urllib.request, "urlopen", offline)
    with pytest.raises(pools.PoolNotAvailableError, match="Offline"):
        pools.load("https://example.org/other.txt", download=True)


class TextModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)))
        self.calls = 0

    def encode_text(self, tokens):
        self.calls += 1
        return self.w[tokens].sum(1)


def test_text_embeddings_are_cached_per_model_and_pool(tmp_path, monkeypatch):
    pytest.importorskip("ccs.evaluate")
    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    tok = lambda texts: torch.tensor([[len(t) % 50, len(t.split()) % 50] for t in texts])  # noqa
    model = TextModel()
    pool = pools.Pool("p", ("a dog", "a red cat", "snow"))
    a = pools.embed(pool, "fake", model, tok)
    assert a.shape == (3, 8) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.array_equal(pools.embed(pool, "fake", model, tok), a) and model.calls == 1
    pools.embed(pools.Pool("p", ("a dog",)), "fake", model, tok)
    assert model.calls == 2  # another pool
    with torch.no_grad():
        model.w.add_(1)
    pools.embed(pool, "fake", model, tok)
    assert model.calls == 3  # other weights


def test_world_subset_keeps_ground_truth_and_shares():
    from ccs import pools

    full, small = pools.load("world"), pools.load("world:150")
    assert len(small) == 150 and small.name == "world:150"
    index = {t: i for i, t in enumerate(full.texts)}
    assert all(full.concepts[index[t]] == c for t, c in zip(small.texts, small.concepts))
    assert set(small.concepts) == set(full.concepts)  # every concept keeps lines
    assert pools.load(f"world:{len(full) + 5}").texts == full.texts
    with pytest.raises(pools.PoolNotAvailableError, match="world:N"):
        pools.load("world:0")
