"""Training throughput of ccs-tiny (`ccs train-tiny`), before and after issue #13, in the same run.

    python benchmarks/train.py                  # 2 threads, 30 timed steps of each, 2 rounds
    python benchmarks/train.py --steps 50 --threads 1

*before* is the previous recipe: its tower (vision width 192, 6 heads of 32) and its loop, one
step after the other: render the batch, tokenise its captions, fp32 forward and backward with
PyTorch's default attention kernel, AdamW over every parameter (the 49,408-row token embedding
included). *after* is `ccs.train.train` as shipped: the current tower, batches rendered and
tokenised (cached) inline (a worker process only competes for 2 cores), bf16 autocast where the CPU has it, the math attention
kernel, and a lazy sparse Adam for the token embedding. Both train on the same world's batches
(batch 256); evaluation and checkpoints are left out of both (they cost the same). The rounds
alternate before/after; the figures are medians over rounds of pairs per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from ccs import models, train, world

BEFORE_TOWER = {"width": 192, "head_width": 32}  # the shipped tower until issue #13


def before(steps: int, cfg: train.TrainConfig) -> float:
    """Pairs per second of the previous training loop on the previous tower."""
    import open_clip

    old = json.loads((models.CONFIG_DIR / f"{cfg.model}.json").read_text())
    old["vision_cfg"].update(BEFORE_TOWER)
    with tempfile.TemporaryDirectory() as configs:
        (Path(configs) / "ccs-tiny-before.json").write_text(json.dumps(old))
        open_clip.add_model_config(configs)
        model = train.build_model("ccs-tiny-before", cfg.seed, cfg.image_mean, cfg.image_std)
        tokenizer = open_clip.get_tokenizer("ccs-tiny-before")
    opt = train.make_optimizer(model, cfg)
    preprocess = models.tensor_preprocess(model)
    loss_fn = open_clip.ClipLoss()

    def step(s):
        b = world.train_batch(
            cfg.batch_size, s, cfg.seed, cfg.sibling_frac, cfg.position_share, cfg.sibling_weights, cfg.sibling_group
        )
        img, txt, scale = model(preprocess(b.images), tokenizer(b.captions))[:3]
        loss = loss_fn(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for s in range(3):  # warm-up
        step(s)
    t = time.perf_counter()
    for s in range(3, 3 + steps):
        step(s)
    return steps * cfg.batch_size / (time.perf_counter() - t)


def after(steps: int, cfg: train.TrainConfig) -> float:
    """Pairs per second of `ccs.train.train` (resumed after 3 warm-up steps, as a run resumes)."""
    with tempfile.TemporaryDirectory() as run:
        warm = train.train(run, cfg, max_steps=3, progress=False)
        wall = warm.wall
        state = train.train(run, None, max_steps=steps, progress=False)
        return steps * cfg.batch_size / (state.wall - wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cfg = replace(train.TrainConfig(), threads=args.threads, eval_every=10**9, save_every=10**9)
    torch.set_num_threads(args.threads)
    rates = {"before": [], "after": []}
    for _ in range(args.rounds):
        rates["before"].append(before(args.steps, cfg))
        rates["after"].append(after(args.steps, cfg))
    b, a = statistics.median(rates["before"]), statistics.median(rates["after"])
    print(
        f"torch {torch.__version__}, {args.threads} threads, {train.hardware()}, "
        f"autocast {train.resolve_precision(cfg.precision, 'cpu') or 'fp32'}"
    )
    print(f"before: {b:7.0f} pairs/s  (rounds: {', '.join(f'{r:.0f}' for r in rates['before'])})")
    print(f"after:  {a:7.0f} pairs/s  (rounds: {', '.join(f'{r:.0f}' for r in rates['after'])})")
    print(f"speed-up per pair: {a / b:.2f}x")


if __name__ == "__main__":
    main()
