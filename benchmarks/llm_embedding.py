"""Accuracy of the offline (embedding) labeler and judge on the held-out hand-written heads.

    python benchmarks/llm_embedding.py              # measure on lib/ccs/data/heads_heldout.yaml
    python benchmarks/llm_embedding.py --calibrate  # refit threshold/floor on the dev set first

Prints label accuracy, the judge's accuracy and Cohen's kappa (judging each text against the head's
intended concept), and the mean absolute error of the end-to-end CCS, for the dev and held-out sets.
"""
from __future__ import annotations

import argparse
import time
from importlib import resources

import yaml

from ccs import llm, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", action="store_true", help="refit and store the calibration")
    parser.add_argument("--verbose", action="store_true", help="list the held-out heads labelled wrongly")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.calibrate:
        cal = llm.calibrate(llm.load_heads("dev"))
        path = resources.files("ccs") / "data" / "embedding_calibration.yaml"
        header = ("# Constants of the embedding labeler/judge, fitted on heads_dev.yaml by\n"
                  "# `python benchmarks/llm_embedding.py --calibrate` (ccs.llm.calibrate).\n")
        path.write_text(header + yaml.safe_dump(cal, sort_keys=False))
        llm.calibration.cache_clear()
        print("calibration:", cal)
    backend = llm.backend("embedding")
    print(f"threshold={backend.threshold} floor={backend.floor}")
    print(f"{'set':8} {'heads':>5} {'label_acc':>9} {'named_acc':>9} {'flagged':>7} "
          f"{'judge_acc':>9} {'judge_kappa':>11} {'ccs_mae':>7} {'ccs_rho':>7}")
    for split in ("dev", "heldout"):
        heads = llm.load_heads(split)
        r = scores.evaluate(backend, heads)
        print(f"{split:8} {r['heads']:5d} {r['label_accuracy']:9.3f} {r['label_accuracy_named']:9.3f} "
              f"{r['flagged']:7d} {r['judge_accuracy']:9.3f} {r['judge_kappa']:11.3f} {r['ccs_mae']:7.3f} "
              f"{r['ccs_spearman']:7.3f}")
        if args.verbose:
            for h, lab in zip(heads, r["labels"]):
                if scores.label_accuracy([lab], [h["concept"]]) < 1:
                    print(f"   {h['concept']:>12} -> {lab:<12} {list(h['texts'])}")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
