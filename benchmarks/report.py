"""Shared by the benchmarks: time one call, run `bench` for each model of the command line, print the rows."""

from __future__ import annotations

import json
import time

import torch


def timed(fn, device) -> float:
    """Seconds one call of `fn` takes (waiting for the GPU's queue on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def print_rows(args, bench, digits: int = 2) -> None:
    """`bench(name, batch, repeats, device)` for every model of `args.models` (args.batch lists a
    batch size per model, the last one repeating); JSON with --json, else a transposed table."""
    device = torch.device(args.device)
    rows = [bench(name, args.batch[min(i, len(args.batch) - 1)], args.repeats, device) for i, name in enumerate(args.models)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    import pandas as pd

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}"
    )
    print(pd.DataFrame(rows).round(digits).T.to_string(header=False))
