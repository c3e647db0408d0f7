"""Text encoding up to the last end-of-text token (`ccs.evaluate.encode_text`) against open_clip's
full-context `encode_text`, which clip_benchmark and open_clip's own zero-shot code call.

    python benchmarks/text_encoding.py                  # ViT-B-32-OpenAI (random weights), 2 threads
    python benchmarks/text_encoding.py --model ccs-tiny --prompts 2000

The prompts are what the pages encode most: CIFAR-10's and Country-211's zero-shot prompts
(clip_benchmark's classes and templates), the first `--prompts` of them, in batches of 512 as
`evaluate.text_embeddings` sends them. Both ways run in the same process, alternately, `--repeat`
times; the ratio of the medians is reported with the largest difference between the embeddings.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ccs import datasets, evaluate, models


def prompts(n: int) -> list[str]:
    cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]  # from the data
    out = []
    for name, classes in (("CIFAR-10", cifar), ("Country-211", datasets.classnames("Country-211"))):
        out += [t.format(c) for c in classes for t in datasets.templates(name)]
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32-OpenAI")
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _, tokenizer = models.load(args.model, untrained=args.model != "ccs-tiny")
    texts = prompts(args.prompts)
    batches = [tokenizer(texts[i : i + 512]) for i in range(0, len(texts), 512)]
    times = {"open_clip encode_text (full context)": [], "evaluate.encode_text (cut at end of text)": []}
    ways = dict(zip(times, (model.encode_text, lambda t: evaluate.encode_text(model, t))))
    out = {}
    with torch.no_grad():
        for _ in range(args.repeat):
            for name, f in ways.items():
                t0 = time.perf_counter()
                out[name] = torch.cat([f(b) for b in batches])
                times[name].append(time.perf_counter() - t0)
    full, cut = (statistics.median(v) for v in times.values())
    longest = max(int(b.argmax(-1).max()) + 1 for b in batches)
    print(f"{args.model}: {len(texts)} prompts, context {batches[0].shape[1]} tokens, the longest prompt {longest}")
    for name, v in times.items():
        print(f"  {name}: median {statistics.median(v):.2f} s over {len(v)} runs")
    a, b = out.values()
    print(f"  ratio {full / cut:.1f}x; largest |difference| of the embeddings {(a - b).abs().max():.1e}")


if __name__ == "__main__":
    main()
