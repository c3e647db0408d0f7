"""Does shipping a concept-world model in half precision change what it recognises?

    python benchmarks/half_precision.py --model ccs-tiny-s1            # run folder train-runs/<model>
    python benchmarks/half_precision.py --model ccs-tiny-s1 --run train-runs/ccs-tiny-s1 --seeds 987654 2468

Compares the packaged fp16 weights (lib/ccs/weights/<model>.safetensors, what `ccs train-tiny --export`
writes) with the fp32 weights of the run's best checkpoint (normalisation folded in the same way), on
the same fresh images: zero-shot accuracy per concept and retrieval recall at 1, and the largest
difference in percentage points. The issue's rule: half precision is fine if no concept moves by more
than 0.5 pp.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ccs import evaluate, models, train


def fp32_model(model: str, run: Path) -> torch.nn.Module:
    """The run's best checkpoint in fp32, normalisation folded as `train.export` folds it."""
    import json

    cfg = json.loads((run / "config.json").read_text())
    src = torch.load(run / "best.pt", map_location="cpu", weights_only=False)["model"]
    state = train.fold_normalisation(src, cfg.get("image_mean", models.TINY_MEAN), cfg.get("image_std", models.TINY_STD))
    m = models.load(model, untrained=True).model
    m.load_state_dict({k: v.float() for k, v in state.items()})
    return m.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=models.TINY)
    parser.add_argument("--run", type=Path, help="training run folder (default train-runs/MODEL)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[987654, 2468])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    run = args.run or Path("train-runs") / args.model
    half, _, tok = models.load(args.model)
    full = fp32_model(args.model, run)
    worst = 0.0
    for seed in args.seeds:
        a = evaluate.world_report(full, tok, seed=seed, n=args.n, splits=["test"])["test"]
        b = evaluate.world_report(half, tok, seed=seed, n=args.n, splits=["test"])["test"]
        for part in ("zero_shot", "retrieval"):
            for k in a[part]:
                d = 100 * (b[part][k] - a[part][k])
                worst = max(worst, abs(d))
                print(f"seed {seed} {k:24s} fp32 {100 * a[part][k]:6.2f}  fp16 {100 * b[part][k]:6.2f}  diff {d:+.2f} pp")
    print(f"largest difference: {worst:.2f} pp ({'within' if worst <= 0.5 else 'OVER'} the 0.5 pp rule)")


if __name__ == "__main__":
    main()
