"""Per-page machinery: what `ccs run` costs beyond the page's own code.

    python benchmarks/machinery.py                          # ccs-tiny's TextSpan and CCS pages
    python benchmarks/machinery.py --pages ccs-tiny/ood:eval_seed=2 --repeat 3
    python benchmarks/machinery.py --in-turn ccs-tiny/textspan,ccs:images=999   # pages in one kernel

For each page, alternately and `--repeat` times: the page's code cells as one plain Python script
(jupytext's reading of notebooks/EXPERIMENT.py, the parameters a run would inject, in a fresh
interpreter in an empty folder: imports included, no kernel, no notebook written), and `ccs run
MODEL EXPERIMENT -p KEY=VALUE` (a parameter other than the book's, so the page goes under outputs/
and the book is left alone; the decompositions and embeddings come from the warm cache either way).
With `--in-turn`, several pages run in one `ccs run` (one kernel, as `make book` runs a model's
pages): the machinery is then the time to the first page's first cell, between one page's last cell
and the next one's first (writing the page, making the kernel fresh), and after the last page's last
cell, shared among the pages.
The difference of the medians includes what the kernel does beyond the code (rendering each figure
to PNG, each table to HTML). The machinery as issue 29 defines it is measured directly as well: from
the moment `ccs run` is started to the first cell's start, and from the last cell's end to the moment
`ccs run` has written the page and exited (papermill's own cell times, read before the page is tidied):
checking the parameters, starting and stopping the kernel, writing and stamping the page. Run it with
the cache warm (run each page once before) and nothing else on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]


def script(experiment: str, params: dict) -> str:
    """The page's code cells as one script, `params` set after the parameters cell (as papermill
    injects them); matplotlib draws off screen and IPython's display prints, as a script would."""
    nb = jupytext.read(ROOT / "notebooks" / f"{experiment}.py")
    code = ["import matplotlib\nmatplotlib.use('Agg')"]
    for cell in nb.cells:
        if cell.cell_type == "code":
            code.append(cell.source)
            if "parameters" in cell.metadata.get("tags", []):
                code += [f"{k} = {v!r}" for k, v in params.items()]
    return "\n\n".join(code)


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


# `ccs run` in a fresh interpreter, with papermill's first cell start and last cell end of each page
# written to a file before `tidy` strips them from the page.
RUN = """
import json, sys
from ccs.pipeline import execution
tidy, pages = execution.tidy, []
def recording(nb, model=None):
    times = [c.metadata.get("papermill", {}) for c in nb.cells if c.cell_type == "code"]
    times = [t for t in times if t.get("start_time")]
    pages.append([times[0]["start_time"], times[-1]["end_time"]])
    json.dump(pages, open(sys.argv[1], "w"))
    tidy(nb, model)
execution.tidy = recording
from ccs.cli import app
app(sys.argv[2:])
"""


def machinery(model: str, experiments: list[str], param: str, cwd: Path) -> tuple[float, float, float]:
    """One `ccs run` of one or more pages: (seconds to the first cell and between pages, seconds from
    the last cell to the end, total)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as times:
        t0 = time.time()
        subprocess.run(
            [sys.executable, "-c", RUN, times.name, "run", model, *experiments, "-p", param],
            cwd=cwd,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        t1 = time.time()
        pages = [[datetime.datetime.fromisoformat(t).timestamp() for t in page] for page in json.load(open(times.name))]
    before = pages[0][0] - t0 + sum(b[0] - a[1] for a, b in zip(pages, pages[1:]))
    return before, t1 - pages[-1][1], t1 - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pages",
        nargs="+",
        default=["ccs-tiny/textspan:texts_per_head=4", "ccs-tiny/ccs:texts=4"],
        help="MODEL/EXPERIMENT:KEY=VALUE, the parameter that keeps the run off the book's page",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--in-turn",
        metavar="MODEL/EXP,EXP,...:KEY=VALUE",
        help="instead: these pages in one `ccs run` (after one run that warms the cache), the machinery per page",
    )
    args = parser.parse_args()
    if args.in_turn:
        name, param = args.in_turn.split(":")
        model, experiments = name.split("/")
        experiments = experiments.split(",")
        machinery(model, experiments, param, ROOT)  # warms the cache for this parameter
        runs = [machinery(model, experiments, param, ROOT) for _ in range(args.repeat)]
        before, after, r = (statistics.median(x) for x in zip(*runs))
        n = len(experiments)
        print(f"{name} ({param}) in one kernel: `ccs run` {r:.1f} s; machinery {before + after:.2f} s in all, ", end="")
        print(f"{(before + after) / n:.2f} s a page (medians of {args.repeat})")
        return
    for page in args.pages:
        name, param = page.split(":")
        model, experiment = name.split("/")
        key, value = param.split("=")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "page.py"
            path.write_text(script(experiment, {"model": model, key: yaml.safe_load(value)}))
            cells, run = [], []
            for _ in range(args.repeat):
                cells.append(timed([sys.executable, str(path)], Path(tmp)))
                run.append(machinery(model, [experiment], param, ROOT))
        c = statistics.median(cells)
        before, after, r = (statistics.median(x) for x in zip(*run))
        print(f"{name} ({param}): cells as a script {c:.1f} s, `ccs run` {r:.1f} s (difference {r - c:.1f} s); ", end="")
        print(f"machinery {before + after:.2f} s: {before:.2f} s to the first cell, ", end="")
        print(f"{after:.2f} s after the last (medians of {args.repeat})")


if __name__ == "__main__":
    main()
