"""Speed, memory and storage of the per-head decomposition, against `encode_image` in the same run.

    python benchmarks/decompose.py                       # tiny + random-init ViT-B-16, CPU
    python benchmarks/decompose.py --device cuda --batch 64 --models ViT-B-16-LAION ViT-L-14-OpenAI

For each model, one batch of images is (after a warm-up) timed alternately through
`model.encode_image` and `ccs.decompose.components` (all analysed heads, fp32), median of the
repeats, and also through `ccs.decompose.stream` (the same plus fp16 memory-mapped storage).
Memory is the peak above what the model and the batch already hold (CUDA: allocator peak; CPU:
peak resident set, sampled). Storage compares the bytes kept per image with what TextSpan's
`compute_prs.py` saves per image: float32 head terms of every layer summed over the tokens, the MLP
terms plus the embedding's, and each layer's class-to-class attention term, 4 * D * (L*H + (L+1) + L)
bytes (L layers, H heads, D output dim). The per-token-pair tensor [T, T, H, D] of each analysed layer
(T tokens) is printed too, as a theoretical bound only: TextSpan's code computes such a tensor in memory
(that is where its time and memory go) but never writes it to disk, so it is not the peer's storage.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import torch
from report import print_rows, timed

from ccs import decompose, models


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Peak memory above the level at entry: the CUDA allocator's on GPUs, sampled RSS on CPUs."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base, self.running = _rss(), True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _rss() - self.base)
            time.sleep(0.0005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.running = False
            self.thread.join()


@torch.no_grad()
def bench(name: str, batch: int, repeats: int, device: torch.device, layers: int = 4) -> dict:
    torch.manual_seed(0)
    try:
        model = models.load(name, device=device).model
        weights = "trained"
    except models.WeightsNotFoundError:
        model = models.load(name, device=device, untrained=True).model
        weights = "random init"
    size = model.visual.image_size[0]
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    x = models.tensor_preprocess(model)(images).to(device)
    encode = lambda: model.encode_image(x, normalize=True)  # noqa: E731
    decomp = lambda: decompose.components(model, x, layers=layers)  # noqa: E731
    for _ in range(2):  # warm-up (kernels, allocator)
        encode(), decomp()
    t_enc, t_dec = [], []
    for _ in range(repeats):  # alternate, so that load from other processes hits both alike
        t_enc.append(timed(encode, device))
        t_dec.append(timed(decomp, device))
    with PeakMemory(device) as m_enc:
        encode()
    with PeakMemory(device) as m_dec:
        decomp()
    with tempfile.TemporaryDirectory() as tmp:
        decompose.stream(model, images, tmp, layers=layers, batch_size=batch, progress=False)
        t_stream = []
        for i in range(max(1, repeats // 2)):
            t_stream.append(
                timed(
                    lambda: decompose.stream(model, images, f"{tmp}/{i}", layers=layers, batch_size=batch, progress=False), device
                )
            )
    visual = model.visual
    H = visual.transformer.resblocks[-1].attn.num_heads
    D = visual.proj.shape[1]
    T = (size // visual.patch_size[0]) ** 2 + 1
    L = len(visual.transformer.resblocks)
    ours = layers * H * D * 2 + layers * D * 2 + D * 2 + 4  # heads, mlps, rest (fp16) + norm
    textspan = 4 * D * (L * H + (L + 1) + L)  # compute_prs.py: attn [L, H, D], mlp [L+1, D], cls_attn [L, D]
    bound = layers * T * T * H * D * 4  # [T, T, H, D] fp32 per analysed layer: computed, never stored
    enc, dec = statistics.median(t_enc), statistics.median(t_dec)
    return {
        "model": name,
        "weights": weights,
        "device": str(device),
        "batch": batch,
        "encode_image ms/img": 1000 * enc / batch,
        "decompose ms/img": 1000 * dec / batch,
        "ratio": dec / enc,
        "stream ratio": statistics.median(t_stream) / enc,
        "encode peak MiB": m_enc.peak / 2**20,
        "decompose peak MiB": m_dec.peak / 2**20,
        "stored B/img": ours,
        "TextSpan compute_prs B/img": textspan,
        "storage x": textspan / ours,
        "[T,T,H,D] bound B/img": bound,
        "bound x": bound / ours,
    }


def main() -> None:
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc keeps freed tensors in its heap, which hides peaks from the RSS: map every block
        # of 64 KiB or more on its own, so that freeing one returns it at once (CPU memory figures)
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["ccs-tiny", "ViT-B-16-LAION"])
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 8], help="batch size per model (the last one repeats)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print_rows(args, bench, digits=2)


if __name__ == "__main__":
    main()
