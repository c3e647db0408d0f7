"""Many prunings of one image set: full forwards against forwards from the first pruned layer.

    python benchmarks/shared_stream.py                     # ccs-tiny, the seeds page's conditions of one seed
    python benchmarks/shared_stream.py --images 500 --repeat 3

The conditions are those the seeds page prunes for one analysis seed (every source's high, low and
random sets, the concept sets with their random controls, every head alone), on `--images` test
images; and the video claims' set conditions on `--clips` clips of 8 frames. Each is timed through
`ccs.pruning.run` / `ccs.retrieval.reports` twice, alternately and `--repeat` times, with an empty
embedding cache each time: with `ccs.ablate.UnprunedStream` (the library's way) and with full forwards
(`pruning.stream` returning None, the way every pruning was computed before). The scores must come out
identical; the ratio is of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from ccs import evaluate, pruning, retrieval, study, world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ccs-tiny")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    st = study.load(
        args.model, images=1000, pool="world", texts=5, seed=0, backend="embedding", calibration="pool", seeds=5, side=5
    )
    sets = st.conditions(equal=False)
    conditions = sets | study.concept_conditions(st.concept_sets("run", 5)) | {f"head/{n}": [n] for n in st.table["name"]}
    evalsets = pruning.world_sets(args.images, 1, ["test"])
    clfs = pruning.classifiers(args.model, st.module, st.tokenizer, world.tasks())
    batch = world.clips(args.clips, 1, frames=8)
    text = evaluate.text_embeddings(st.module, st.tokenizer, [world.full_caption(a) for _, a in batch.attributes.iterrows()])
    work = {
        f"pruning.run, {len(conditions)} conditions x {args.images} images": lambda: (
            pruning.run(st.module, args.model, evalsets, clfs, conditions, progress=False).scores
        ),
        f"retrieval.reports, {len(sets)} conditions x {args.clips} clips x 8 frames": lambda: retrieval.reports(
            args.model, st.module, text, batch.frames, sets
        ),
    }
    full, shared = (lambda model, images: None), pruning.stream
    for what, step in work.items():
        times, results = {"stream": [], "full": []}, {}
        for _ in range(args.repeat):
            for way, fn in (("stream", shared), ("full", full)):
                pruning.stream = retrieval.stream = fn  # each module's own name for it
                with tempfile.TemporaryDirectory() as tmp:
                    os.environ["CCS_CACHE"] = tmp  # nothing served from the cache
                    t0 = time.perf_counter()
                    results[way] = step()
                    times[way].append(time.perf_counter() - t0)
        pruning.stream = retrieval.stream = shared
        same = _same(results["full"], results["stream"])
        f, s = statistics.median(times["full"]), statistics.median(times["stream"])
        print(f"{what}: full forwards {f:.1f} s, from the first pruned layer {s:.1f} s, {f / s:.2f}x; identical: {same}")


def _same(a, b) -> bool:
    """Nested dicts of arrays equal bit for bit (NaN where NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f")


if __name__ == "__main__":
    main()
