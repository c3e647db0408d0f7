"""Accuracy of the offline (embedding) labeler and judge on the held-out hand-written heads.

    python benchmarks/llm_embedding.py              # measure on lib/ccs/data/heads_heldout.yaml
    python benchmarks/llm_embedding.py --calibrate  # refit the judge threshold on the dev set first
    python benchmarks/llm_embedding.py --calibrate-models  # refit each trained model's world calibration
    python benchmarks/llm_embedding.py --world      # also 180 heads simulated from the world pool
    python benchmarks/llm_embedding.py --backend openai --judge-model gpt-4o  # an LLM, same sets
    python benchmarks/llm_embedding.py --line-checks  # the judge's line check on a cold cache: batched / per line

Prints label accuracy (heads with a concept), the share of concept-less heads scored low (CCS <= 1),
the judge's accuracy and Cohen's kappa (judging each text against the head's
intended concept), and the mean absolute error of the end-to-end CCS, for the dev and held-out sets
(and, with --world, for heads drawn from the concept-world pool, scored by ccs.scores.ground_truth).
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

import numpy as np
import yaml

from ccs import llm, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", action="store_true", help="refit and store the calibration")
    parser.add_argument("--verbose", action="store_true", help="list the held-out heads labelled wrongly")
    parser.add_argument("--world", action="store_true", help="also heads simulated from the world pool")
    parser.add_argument("--backend", default="embedding", help="embedding (default) or openai")
    parser.add_argument("--judge-model", default="gpt-4o-mini", help="endpoint model of the openai backend")
    parser.add_argument(
        "--calibrate-models",
        action="store_true",
        help="refit and store each trained concept-world model's calibration, leave-one-model-out on the others' heads",
    )
    parser.add_argument(
        "--line-checks",
        action="store_true",
        help="time the judge's check on unpicked lines from a cold sentence-embedding cache, batched against per line",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.line_checks:
        return line_checks_speed()
    if args.calibrate_models:
        calibrate_models()
    if args.calibrate:
        cal = llm.fit_calibrations()
        path = resources.files("ccs") / "data" / "embedding_calibration.yaml"
        header = (
            "# The embedding labeler/judge's calibrations (ccs.llm.CALIBRATIONS): real and world refitted\n"
            "# on heads_dev.yaml and heads_world_dev.yaml by `python benchmarks/llm_embedding.py\n"
            "# --calibrate` (ccs.llm.fit_calibrations); lenient is the judge before pools had their own.\n"
        )
        path.write_text(header + yaml.safe_dump(cal, sort_keys=False))
        llm.calibrations.cache_clear()
        print("calibration:", cal)
    if args.backend == "openai":
        backend = llm.backend("openai", model=args.judge_model)
        print(f"openai backend, model {args.judge_model}")
    else:
        backend = llm.backend("embedding")
        print(f"real pools: {backend.settings()}")
    print(
        f"{'set':8} {'heads':>5} {'label_acc':>9} {'none_low':>9} {'flagged':>7} "
        f"{'judge_acc':>9} {'judge_kappa':>11} {'ccs_mae':>7} {'ccs_rho':>7}"
    )
    for split in ("dev", "heldout"):
        heads = llm.load_heads(split)
        r = scores.evaluate(backend, heads)
        print(
            f"{split:8} {r['heads']:5d} {r['label_accuracy']:9.3f} {r['incoherent_low']:9.3f} "
            f"{r['flagged']:7d} {r['judge_accuracy']:9.3f} {r['judge_kappa']:11.3f} {r['ccs_mae']:7.3f} "
            f"{r['ccs_spearman']:7.3f}"
        )
        if args.verbose:
            for h, lab in zip(heads, r["labels"]):
                if scores.label_accuracy([lab], [h["concept"]]) < 1:
                    print(f"   {h['concept']:>12} -> {lab:<12} {list(h['texts'])}")
    if args.world:
        if args.backend == "embedding":  # concept-world heads are judged with the world calibration
            backend = llm.backend("embedding", calibration="world")
            print(f"world pool: {backend.settings()}")
        r = scores.ground_truth(scores.score_heads(world_heads(), backend))
        print(
            f"{'world':8} {r['heads']:5d} {r['label_accuracy']:9.3f} {'':>9} {r['flagged']:7d} "
            f"{r['judge_accuracy']:9.3f} {r['judge_kappa']:11.3f} {r['ccs_mae']:7.3f} {r['ccs_spearman']:7.3f}"
        )
    print(f"({time.perf_counter() - t0:.1f} s)")


def calibrate_models() -> None:
    """Fit data/world_model_calibrations.yaml on the heads of the book's trained models, analysed as
    their pages analyse them (pipeline.yaml's shared analysis parameters)."""
    from ccs import models, pipeline, textspan

    grid = pipeline.grid()
    a = grid["analysis"]
    shared = {"images": a["images"], "pool": a["pool"], "seed": a["seed"]}
    ts = grid["experiments"]["textspan"]["parameters"]
    trained = [m for m in grid["models"] if models.spec(m).embedded]
    records = {
        m: textspan.analyse(m, layers=ts["last_layers"], texts=ts["texts_per_head"], progress=False, **shared).records()
        for m in trained
    }
    fitted = llm.fit_model_calibrations(records)
    path = resources.files("ccs") / "data" / "world_model_calibrations.yaml"
    header = (
        "# The concept-world calibration of each trained model (ccs.llm.model_calibrations), fitted\n"
        "# leave-one-model-out: offsets and margin from the heads of the models in `fitted_on` only,\n"
        "# never the model's own. Written by `python benchmarks/llm_embedding.py --calibrate-models`.\n"
    )
    path.write_text(header + yaml.safe_dump(fitted, sort_keys=False, width=120))
    llm.model_calibrations.cache_clear()
    for m, c in fitted.items():
        print(f"{m}: margin {c['margin']}, {len(c['offsets'])} offsets (strength {c['strength']}), fitted on {c['fitted_on']}")


def world_heads(seed: int = 0, repeats: int = 3) -> list[dict]:
    """Simulated heads from the concept-world pool: for each of its concepts, heads of k = 5, 4, 3
    lines of that concept plus 5 - k lines of other concepts; each line keeps its generating concept."""
    from ccs import pools

    pool, rng = pools.load("world"), np.random.default_rng(seed)
    by = {}
    for t, c in zip(pool.texts, pool.concepts):
        by.setdefault(c, []).append(t)
    heads = []
    for c in by:
        for k in (5, 4, 3):
            for _ in range(repeats):
                others = rng.choice([o for o in by if o != c], 5 - k)
                texts = list(rng.choice(by[c], k, replace=False)) + [str(rng.choice(by[o])) for o in others]
                heads.append(
                    {
                        "layer": 0,
                        "head": len(heads),
                        "texts": [str(t) for t in texts],
                        "concepts": [c] * k + [str(o) for o in others],
                    }
                )
    return heads


def line_checks_speed() -> None:
    """`llm.line_checks` (the CCS page's judge check on the pool lines no head picked) from an empty
    sentence-embedding cache, as a fresh clone meets it: with its one batched embedding pass, against
    the judge embedding each line alone as it is asked about it (what it did before the pass), in the
    same run; both give the same result."""
    import os
    import tempfile

    from ccs import pools
    from ccs.llm import embedding

    pool = pools.world()
    b = llm.make("embedding", pool="world", calibration="world")
    picked = set(pool.texts[::3])
    lines = [t for t in pool.texts if t not in picked]
    timings, results = {}, {}
    for way in ("per line", "batched"):
        with tempfile.TemporaryDirectory() as cold:
            os.environ["CCS_CACHE"] = cold
            embedding._EMBEDDINGS.clear()
            t = time.perf_counter()
            if way == "per line":
                for line in lines:
                    embedding.embed([line])
            results[way] = llm.line_checks(b, pool, picked)
            timings[way] = time.perf_counter() - t
    assert results["per line"] == results["batched"], results
    print(
        f"line checks on {len(lines)} lines from a cold cache: per line {timings['per line']:.1f} s, "
        f"batched {timings['batched']:.1f} s, ratio {timings['per line'] / timings['batched']:.1f}x (same result)"
    )


if __name__ == "__main__":
    main()
