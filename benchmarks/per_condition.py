"""What a page pays per pruning condition and per bootstrap resample, besides the forward pass.

    python benchmarks/per_condition.py                  # random-init ViT-B-32, 1000 + 1000 OOD scores
    python benchmarks/per_condition.py --model ViT-B-16-LAION --repeats 5

Soft pruning keys each condition's image embeddings by the fingerprint of the image tower as pruned
(`ccs.fingerprints.fingerprint`). Three timings, medians of the repeats, against the first:

- *cold*: hashing every weight tensor from scratch (what every condition paid before the per-tensor
  digests were kept);
- *unchanged*: the same tower again (every digest kept);
- *pruned*: inside `ablate.pruned` with 6 heads of the last layers (only the edited out-projections
  are hashed again).

The OOD page bootstraps its AUROC a thousand times per comparison. `ccs.evaluate.auroc` (average
ranks) is timed against sklearn's `roc_auc_score`, the previous implementation, on the same scores,
and their largest difference is printed (they compute the same statistic). A bootstrap resample's
AUROC from how often each score is drawn (`ccs.evaluate.ResampledAuroc`, what the bootstraps use now)
is timed against `auroc` of the resampled arrays (what they did before), and checked to be equal.

Each condition is also keyed by its images: `ccs.fingerprints.images_hash` of a video set's frames
(500 clips of 8 frames, flattened anew at each call as the video claims do), the first time against
the next ones (kept while the frames are unchanged).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ccs import ablate, evaluate, fingerprints, models


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32-OpenAI")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scores", type=int, default=1000, help="scores on each side of the AUROC")
    args = parser.parse_args()

    model = models.load(args.model, untrained=args.model not in models.zoo()).model.eval()
    spec = models.spec(args.model)
    heads = [f"L{spec.layers - 1 - i % 2}.H{i}" for i in range(6)]

    def cold():
        fingerprints._DIGESTS.clear()
        fingerprints.fingerprint(model.visual)

    def pruned():
        with ablate.pruned(model, heads):
            fingerprints.fingerprint(model.visual)

    base = timed(cold, args.repeats)
    fingerprints.fingerprint(model.visual)
    warm = timed(lambda: fingerprints.fingerprint(model.visual), args.repeats)
    edit = timed(pruned, args.repeats)
    params = sum(p.numel() for p in model.visual.parameters())
    print(f"{args.model} image tower, {params / 1e6:.1f} M parameters")
    print(f"fingerprint cold       {base * 1e3:9.2f} ms   1.000x")
    print(f"fingerprint unchanged  {warm * 1e3:9.2f} ms   {warm / base:.4f}x")
    print(f"fingerprint pruned     {edit * 1e3:9.2f} ms   {edit / base:.4f}x  (includes entering and leaving the block)")

    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s_in = np.round(rng.normal(0.6, 0.1, args.scores), 3)  # rounded: ties, as MCM scores have at their maximum
    s_out = np.round(rng.normal(0.5, 0.1, args.scores), 3)
    y = np.r_[np.ones(args.scores), np.zeros(args.scores)]
    old = timed(lambda: roc_auc_score(y, np.r_[s_in, s_out]), args.repeats * 10)
    new = timed(lambda: evaluate.auroc(s_in, s_out), args.repeats * 10)
    diff = abs(evaluate.auroc(s_in, s_out) - roc_auc_score(y, np.r_[s_in, s_out]))
    print(f"AUROC sklearn          {old * 1e3:9.3f} ms   1.000x")
    print(f"AUROC from ranks       {new * 1e3:9.3f} ms   {new / old:.3f}x  (largest difference {diff:.1e})")

    draws = [(rng.integers(0, args.scores, args.scores), rng.integers(0, args.scores, args.scores)) for _ in range(200)]
    at = evaluate.ResampledAuroc(s_in, s_out)
    arrays = timed(lambda: [evaluate.auroc(s_in[i], s_out[o]) for i, o in draws], args.repeats) / len(draws)
    counted = timed(
        lambda: [at(evaluate.counts(i, args.scores), evaluate.counts(o, args.scores)) for i, o in draws], args.repeats
    )
    counted /= len(draws)
    same = all(
        at(evaluate.counts(i, args.scores), evaluate.counts(o, args.scores)) == evaluate.auroc(s_in[i], s_out[o])
        for i, o in draws
    )
    print(f"resample: AUROC of the arrays drawn  {arrays * 1e3:9.3f} ms   1.000x")
    ratio = counted / arrays
    print(f"resample: from the draw counts       {counted * 1e3:9.3f} ms   {ratio:.3f}x  (equal on all {len(draws)}: {same})")

    import torch

    frames = torch.randint(0, 256, (500, 8, 3, 32, 32), dtype=torch.uint8)
    first = timed(lambda: (fingerprints._IMAGES.clear(), fingerprints.images_hash(frames.flatten(0, 1))), args.repeats)
    kept = timed(lambda: fingerprints.images_hash(frames.flatten(0, 1)), args.repeats)
    print(f"images_hash of 4,000 frames, first   {first * 1e3:9.3f} ms   1.000x")
    print(f"images_hash of 4,000 frames, kept    {kept * 1e3:9.3f} ms   {kept / first:.4f}x")


if __name__ == "__main__":
    main()
