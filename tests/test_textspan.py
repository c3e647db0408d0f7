"""TextSpan recovers planted directions, deterministically, with orthogonal directions."""

import numpy as np
import pytest

from ccs import textspan


pytestmark = pytest.mark.usefixtures("one_thread")


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
    residual = data - rec
    assert residual.var(0).sum() / data.var(0).sum() == pytest.approx(1 - s.explained, abs=1e-4)


def test_stops_when_nothing_is_left_to_explain():
    data = np.outer(np.linspace(-1, 1, 50), np.eye(4)[0])  # rank one
    texts = np.eye(4)
    s = textspan.span(data, texts, m=3)
    assert s.indices == [0] and s.explained == pytest.approx(1.0)


def test_all_heads_reconstruction_and_mean_ablation(tmp_path):
    import torch

    from ccs import decompose, models

    torch.manual_seed(0)
    model = models.load("ccs-tiny", untrained=True).model
    images = torch.randint(0, 256, (40, 3, 48, 48), dtype=torch.uint8)
    dec = decompose.stream(model, images, tmp_path, layers=2, batch_size=40, progress=False)
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(30, dec.meta["dim"]))
    spans = textspan.heads(dec, texts, m=2, progress=False)
    H = dec.meta["heads"]
    assert sorted(spans) == [(l, h) for l in dec.layers for h in range(H)]
    assert all(len(s.indices) == 2 for s in spans.values())
    heads = dec.heads.astype(np.float32)
    rec = textspan.reconstruction(dec, spans)(heads)
    assert rec.shape == heads.shape
    np.testing.assert_allclose(rec.mean(0), heads.mean(0), atol=1e-5)
    full = {
        k: textspan.Span(
            s.indices,
            s.variances,
            s.explained,
            np.linalg.qr(np.random.default_rng(1).normal(size=(dec.meta["dim"],) * 2))[0].T,
            s.mean,
        )
        for k, s in spans.items()
    }
    np.testing.assert_allclose(
        dec.embeddings(textspan.reconstruction(dec, full)), dec.embeddings(), atol=1e-4
    )  # reconstruction from a full basis changes nothing
    ablated = dec.embeddings(textspan.mean_ablation(dec))
    expected = dec.embeddings() - heads.sum((1, 2)) + heads.mean(0).sum((0, 1))
    np.testing.assert_allclose(ablated, expected, atol=1e-4)

    class Pool:
        texts = [f"t{i}" for i in range(30)]
        concepts = ["c"] * 30

    rows = textspan.records(spans, Pool)
    assert rows[0]["layer"] == dec.layers[0] and rows[0]["concepts"] == ["c", "c"]


def test_cli_and_zero_shot_check_end_to_end(tmp_path, monkeypatch):
    """`ccs textspan --json` on the random-init tiny model and a few world images."""
    import json

    pytest.importorskip("ccs.world")
    pytest.importorskip("ccs.evaluate")
    from typer.testing import CliRunner

    from ccs import models
    from ccs.cli import app

    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    args = ["textspan", "--model", "ccs-tiny", "--texts", "3", "--images", "48", "--layers", "2", "--untrained", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    spec = models.spec("ccs-tiny")
    layers = range(spec.layers - 2, spec.layers)
    assert [(r["layer"], r["head"]) for r in rows] == [(l, h) for l in layers for h in range(spec.heads)]
    assert all(len(r["texts"]) == 3 and len(r["concepts"]) == 3 for r in rows)
    a = textspan.analyse("ccs-tiny", images=48, layers=2, texts=3, untrained=True, progress=False)
    assert a.records() == rows  # deterministic, and served from the cache
    check = textspan.zero_shot_check(a)
    assert list(check.columns) == ["task", "classes", "original", "textspan", "mean-ablated"]
    bad = CliRunner().invoke(app, ["textspan", "--model", "nope"])
    assert bad.exit_code == 1 and "Unknown model" in bad.output
