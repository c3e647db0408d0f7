"""TextSpan recovers planted directions, deterministically, with orthogonal directions."""
import numpy as np
import pytest

from ccs import textspan


def _planted(seed=0, n=400, d=16, m=60, planted=(7, 23, 41), stds=(3.0, 2.0, 1.0)):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    data = rng.normal(size=(n, len(stds))) * stds @ basis[: len(stds)] + 0.5 * basis[5]
    data += 0.01 * rng.normal(size=data.shape)
    texts = rng.normal(size=(m, d))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    texts[list(planted)] = basis[: len(stds)]
    return data, texts


@pytest.mark.parametrize("rank", [None, 3, 8])
def test_recovers_planted_directions_in_order(rank):
    data, texts = _planted()
    s = textspan.span(data, texts, m=3, rank=rank)
    assert s.indices == [7, 23, 41]
    np.testing.assert_allclose(s.variances, np.array([9, 4, 1]) / 14, atol=0.05)
    assert s.explained > 0.99


def test_directions_are_orthonormal_and_deterministic():
    data, texts = _planted(seed=1)
    a = textspan.span(data, texts, m=8)
    b = textspan.span(data, texts, m=8)
    assert a.indices == b.indices and len(set(a.indices)) == 8
    np.testing.assert_allclose(a.directions @ a.directions.T, np.eye(8), atol=1e-8)
    assert a.explained == pytest.approx(sum(a.variances)) and a.explained <= 1 + 1e-9


def test_reconstruction_is_the_projection_onto_the_span():
    data, texts = _planted(seed=2)
    s = textspan.span(data, texts, m=3)
    rec = s.reconstruct(data)
    np.testing.assert_allclose(rec.mean(0), data.mean(0), atol=1e-5)
    residual = (data - rec)
    assert residual.var(0).sum() / data.var(0).sum() == pytest.approx(1 - s.explained, abs=1e-4)


def test_stops_when_nothing_is_left_to_explain():
    data = np.outer(np.linspace(-1, 1, 50), np.eye(4)[0])  # rank one
    texts = np.eye(4)
    s = textspan.span(data, texts, m=3)
    assert s.indices == [0] and s.explained == pytest.approx(1.0)


class FakeDecomposition:
    def __init__(self, heads):
        self.heads = heads
        self.layers = [4, 5]
        self.meta = {"head_dim": 3}


def test_all_heads_reconstruction_and_mean_ablation():
    rng = np.random.default_rng(0)
    dec = FakeDecomposition(rng.normal(size=(30, 2, 2, 6)).astype(np.float16))
    texts = rng.normal(size=(20, 6))
    spans = textspan.heads(dec, texts, m=2, progress=False)
    assert sorted(spans) == [(4, 0), (4, 1), (5, 0), (5, 1)]
    rec = textspan.reconstructed(dec, spans)
    assert rec.shape == dec.heads.shape
    ablated = textspan.mean_ablated(dec)
    np.testing.assert_allclose(ablated[0], ablated[-1])

    class Pool:
        texts = [f"t{i}" for i in range(20)]
        concepts = ["c"] * 20

    rows = textspan.records(spans, Pool)
    assert rows[0]["layer"] == 4 and len(rows[0]["texts"]) == 2 and rows[0]["concepts"] == ["c", "c"]


def test_cli_and_zero_shot_check_end_to_end(tmp_path, monkeypatch):
    """`ccs textspan --json` on the random-init tiny model and a few world images."""
    import json

    pytest.importorskip("ccs.world")
    pytest.importorskip("ccs.evaluate")
    from typer.testing import CliRunner

    from ccs.cli import app

    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    args = ["textspan", "--model", "ccs-tiny", "--texts", "3", "--images", "48", "--layers", "2",
            "--untrained", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["layer"], r["head"]) for r in rows] == [(l, h) for l in (4, 5) for h in range(6)]
    assert all(len(r["texts"]) == 3 and len(r["concepts"]) == 3 for r in rows)
    a = textspan.analyse("ccs-tiny", images=48, layers=2, texts=3, untrained=True, progress=False)
    assert a.records() == rows  # deterministic, and served from the cache
    check = textspan.zero_shot_check(a)
    assert list(check.columns) == ["task", "classes", "original", "textspan", "mean-ablated"]
    bad = CliRunner().invoke(app, ["textspan", "--model", "nope"])
    assert bad.exit_code == 1 and "Unknown model" in bad.output
