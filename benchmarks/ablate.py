"""Cost of soft pruning (`ccs.ablate.pruned`), against a plain `encode_image` in the same run.

    python benchmarks/ablate.py                       # ccs-tiny + random-init ViT-B-16, 2 threads
    python benchmarks/ablate.py --device cuda --batch 64 --models ViT-B-16-LAION ViT-L-14-OpenAI

For each model, one batch of concept-world images (`ccs.world.sample(batch, 0)`, preprocessed
once, resized to the model's input) is timed, after a warm-up, through `model.encode_image` plain,
inside `pruned(model, heads, "zero")` and inside `pruned(model, heads, "mean")` (6 heads; the
paper's first 6 high-CCS heads where it lists them), interleaved in a rotating order, median of the
repeats. Pruning edits the out-projections in place, so a pruned forward should cost what a plain
one does (target: ratio <= 1.1). Also timed, relative to one plain forward: entering and leaving
the context (saving, editing and restoring the weights; mean mode with precomputed means), and
`head_means` on the same batch as reference set (all layers, and only the pruned heads' layers,
which is what `pruned(..., "mean", reference=images)` computes).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from report import print_rows, timed

from ccs import ablate, models, world


def _heads(name: str, model) -> list:
    """6 heads: the paper's first 6 high-CCS heads of the model, else 6 of the last 4 layers."""
    listed = models.paper()["heads"].get(name, {}).get("high", [])
    if len(listed) >= 6:
        return listed[:6]
    blocks = model.visual.transformer.resblocks
    L, H = len(blocks), blocks[-1].attn.num_heads
    return [(L - 1 - i % 4, (2 * i + 1) % H) for i in range(6)]


@torch.no_grad()
def bench(name: str, batch: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    try:
        model = models.load(name, device=device).model
        weights = "trained"
    except models.WeightsNotFoundError:
        model = models.load(name, device=device, untrained=True).model
        weights = "random init"
    x = models.tensor_preprocess(model)(world.sample(batch, 0).images).to(device)
    heads = _heads(name, model)
    layers = sorted({layer for layer, _ in ablate.parse_heads(model, heads)})
    forward = lambda: model.encode_image(x)  # noqa: E731

    t_means = [timed(lambda: ablate.head_means(model, x, batch_size=batch), device)]
    means = ablate.head_means(model, x, batch_size=batch)
    t_means_some = [timed(lambda: ablate.head_means(model, x, layers, batch_size=batch), device)]

    def run(mode):
        if mode == "plain":
            return timed(forward, device)
        with ablate.pruned(model, heads, mode, means=means):
            return timed(forward, device)

    modes = ["plain", "zero", "mean"]
    for mode in modes * 2:  # warm-up (kernels, allocator)
        run(mode)
    times = {m: [] for m in modes}
    for r in range(repeats):  # interleaved, rotating order: load from other processes hits all alike
        for mode in modes[r % 3 :] + modes[: r % 3]:
            times[mode].append(run(mode))
    plain = statistics.median(times["plain"])

    def enter_exit(mode):
        with ablate.pruned(model, heads, mode, means=means):
            pass

    ctx = {mode: [timed(lambda: enter_exit(mode), device) for _ in range(50)] for mode in ("zero", "mean")}
    for _ in range(2):
        t_means.append(timed(lambda: ablate.head_means(model, x, batch_size=batch), device))
        t_means_some.append(timed(lambda: ablate.head_means(model, x, layers, batch_size=batch), device))
    return {
        "model": name,
        "weights": weights,
        "device": str(device),
        "batch": batch,
        "heads": " ".join(f"L{a}.H{b}" for a, b in ablate.parse_heads(model, heads)),
        "plain ms/img": 1000 * plain / batch,
        "zero ms/img": 1000 * statistics.median(times["zero"]) / batch,
        "mean ms/img": 1000 * statistics.median(times["mean"]) / batch,
        "zero ratio": statistics.median(times["zero"]) / plain,
        "mean ratio": statistics.median(times["mean"]) / plain,
        "enter+exit zero, x forward": statistics.median(ctx["zero"]) / plain,
        "enter+exit mean, x forward": statistics.median(ctx["mean"]) / plain,
        "enter+exit zero ms": 1000 * statistics.median(ctx["zero"]),
        "enter+exit zero ms, fastest": 1000 * min(ctx["zero"]),
        "enter+exit mean ms": 1000 * statistics.median(ctx["mean"]),
        "head_means all layers, x forward": statistics.median(t_means) / plain,
        "head_means pruned layers, x forward": statistics.median(t_means_some) / plain,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["ccs-tiny", "ViT-B-16-LAION"])
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 8], help="batch size per model (the last one repeats)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print_rows(args, bench, digits=4)


if __name__ == "__main__":
    main()
