"""TextSpan (Gandelsman et al., ICLR 2024): describe a head by the texts that span its output.

For one head, with contributions X [N, D] over N images and candidate text embeddings T [M, D]:

1. project the texts onto the top-r right singular subspace of X (r defaults to the head dimension:
   a head writes into a subspace of that rank), and centre X;
2. m times: pick the text whose projection ``X @ t`` has the largest variance over the images,
   record it, and remove its direction from X and from every candidate text.

Everything is done on the D x D covariance of X, which gives the same picks as the reference code
(that works on X itself) at a fraction of the memory. The chosen directions are mutually
orthogonal, so a head's reconstruction from its texts is a projection onto their span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Span:
    """The texts chosen for one head, in selection order."""

    indices: list[int]  # pool indices
    variances: list[float]  # fraction of the head's variance each text explained
    explained: float  # fraction of the head's variance explained by all of them
    directions: np.ndarray = field(repr=False)  # [m, D] orthonormal, the texts' deflated directions
    mean: np.ndarray = field(repr=False)  # [D] the head's mean contribution

    def reconstruct(self, data: np.ndarray) -> np.ndarray:
        """The head's contributions [N, D] projected onto the mean plus the span of its texts."""
        centred = np.asarray(data, dtype=np.float64) - self.mean
        return (self.mean + centred @ self.directions.T @ self.directions).astype(np.float32)


def span(data: np.ndarray, texts: np.ndarray, m: int = 5, rank: int | None = None) -> Span:
    """Greedy TextSpan for one head: `data` [N, D] its contributions, `texts` [M, D] the candidate
    text embeddings, `m` texts to choose, `rank` of the projection (default: D, i.e. none; callers
    pass the head dimension). Deterministic: ties go to the lower pool index."""
    X = np.asarray(data, dtype=np.float64)
    T = np.asarray(texts, dtype=np.float64)
    D = X.shape[1]
    rank = D if rank is None else min(rank, D)
    # top right singular vectors of X (uncentred, as in the reference) = top eigenvectors of X^T X
    evals, evecs = np.linalg.eigh(X.T @ X)
    V = evecs[:, np.argsort(evals)[::-1][:rank]]
    T = T @ V @ V.T
    mean = X.mean(0)
    C = np.cov(X - mean, rowvar=False, bias=True).reshape(D, D)
    total = float(np.trace(C))
    indices, variances, directions = [], [], []
    for _ in range(m):
        scores = ((T @ C) * T).sum(1)  # variance of X @ t over the images
        j = int(np.argmax(scores))
        t = T[j]
        tn = float(t @ t)
        if tn <= 1e-12 or scores[j] <= 1e-12 * max(total, 1e-30):
            break  # nothing left to explain in the texts' span
        u = t / np.sqrt(tn)
        indices.append(j)
        variances.append(float(u @ C @ u) / total if total > 0 else 0.0)
        directions.append(u)
        P = np.eye(D) - np.outer(u, u)
        C = P @ C @ P
        T = T - np.outer(T @ u, u)
    directions = np.array(directions).reshape(-1, D)
    return Span(indices, variances, float(sum(variances)), directions, mean)


def heads(
    decomposition, texts: np.ndarray, m: int = 5, rank: int | None = None, progress: bool = True
) -> dict[tuple[int, int], Span]:
    """TextSpan for every head of a stored decomposition: {(layer, head): Span}. `rank` defaults to
    the head dimension (residual width / heads, read from the decomposition's metadata)."""
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    arr = decomposition.heads  # [N, K, H, D]
    rank = rank or decomposition.meta.get("head_dim")
    out = {}
    cells = [(k, h) for k in range(arr.shape[1]) for h in range(arr.shape[2])]
    # D x D matrices are too small for threaded BLAS: threads only contend (10x slower on 2 busy cores)
    with threadpool_limits(1, user_api="blas"):
        for k, h in tqdm(cells, desc="textspan", unit="head", disable=not progress):
            out[decomposition.layers[k], h] = span(np.asarray(arr[:, k, h], dtype=np.float32), texts, m, rank)
    return out


def reconstruction(decomposition, spans: dict[tuple[int, int], Span]):
    """A `replace` function for `Decomposition.embeddings`: every analysed head replaced by its
    TextSpan reconstruction (its mean plus its projection onto its texts' directions)."""

    def replace(h: np.ndarray) -> np.ndarray:
        out = np.empty_like(h)
        for k, layer in enumerate(decomposition.layers):
            for j in range(h.shape[2]):
                out[:, k, j] = spans[layer, j].reconstruct(h[:, k, j])
        return out

    return replace


def mean_ablation(decomposition):
    """A `replace` function for `Decomposition.embeddings`: every analysed head replaced by its mean
    over the images (TextSpan's mean-ablation: a direct effect on the stored decomposition, no
    forward pass; the paper's soft pruning is another thing, see ccs.ablate)."""
    means = decomposition.head_means()
    return lambda h: np.broadcast_to(means, h.shape)


def records(spans: dict[tuple[int, int], Span], pool) -> list[dict]:
    """One JSON-ready record per head: its texts in order, their pool indices, ground-truth concepts
    (for pools that have them), the variance each explained and in all."""
    rows = []
    for (layer, head), s in sorted(spans.items()):
        row = {
            "layer": layer,
            "head": head,
            "texts": [pool.texts[i] for i in s.indices],
            "indices": s.indices,
            "variance": [round(v, 6) for v in s.variances],
            "explained": round(s.explained, 6),
        }
        if pool.concepts is not None:
            row["concepts"] = [pool.concepts[i] for i in s.indices]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# The whole step for a model: images -> decomposition -> pool embeddings -> spans (all cached)


@dataclass
class Analysis:
    model_name: str
    model: object = field(repr=False)
    tokenizer: object = field(repr=False)
    batch: object = field(repr=False)  # the world images (ccs.world.WorldBatch)
    decomposition: object = field(repr=False)
    pool: object = field(repr=False)
    text_embeddings: np.ndarray = field(repr=False)
    spans: dict = field(repr=False)

    def records(self) -> list[dict]:
        return [{"model": self.model_name, **r} for r in records(self.spans, self.pool)]


def analyse(
    model_name: str,
    *,
    images: int = 1000,
    pool: str = "world",
    layers: int = 4,
    texts: int = 5,
    rank: int | None = None,
    seed: int = 0,
    split: str = "test",
    untrained: bool = False,
    batch_size: int = 64,
    download: bool = False,
    convention: str = "centred",
    progress: bool = True,
) -> Analysis:
    """TextSpan for the heads of the last `layers` layers of a registered model, on `images` images
    of the concept world and the description pool `pool` (see ccs.pools.load). `convention` splits
    ln_post among the terms (see ccs.decompose). The decomposition and the text embeddings are
    cached on disk; the greedy search itself takes seconds."""
    import torch

    from ccs import decompose, models, pools, world

    if untrained:
        torch.manual_seed(seed)  # the same random model each time (and so the same cache entries)
    model, _, tokenizer = models.load(model_name, untrained=untrained)
    batch = world.sample(images, seed, split=split)
    dec = decompose.cached(
        model, model_name, batch.images, layers=layers, batch_size=batch_size, convention=convention, progress=progress
    )
    p = pools.load(pool, download=download)
    emb = pools.embed(p, model_name, model, tokenizer)
    spans = heads(dec, emb, m=texts, rank=rank, progress=progress)
    return Analysis(model_name, model, tokenizer, batch, dec, p, emb, spans)


def zero_shot_check(a: Analysis) -> pd.DataFrame:
    """TextSpan's check, per world task: zero-shot accuracy of the (stored, decomposed) embedding,
    with every analysed head replaced by its TextSpan reconstruction, and with every analysed head
    mean-ablated. A good description keeps the accuracy; mean-ablation shows what is at stake."""
    import pandas as pd
    import torch

    from ccs import evaluate, world

    dec = a.decomposition
    variants = {
        "original": dec.embeddings(),
        "textspan": dec.embeddings(reconstruction(dec, a.spans)),
        "mean-ablated": dec.embeddings(mean_ablation(dec)),
    }
    rows = []
    for name, task in world.tasks().items():
        clf = evaluate.zero_shot_classifier(a.model, a.tokenizer, task.classnames, task.templates)
        labels = task.labels(a.batch.attributes)
        rows.append(
            {
                "task": name,
                "classes": len(task.classnames),
                **{k: evaluate.accuracy(torch.from_numpy(v), clf, labels) for k, v in variants.items()},
            }
        )
    return pd.DataFrame(rows)
