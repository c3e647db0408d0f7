"""Per-page machinery: what `ccs run` costs beyond the page's own code.

    python benchmarks/machinery.py                          # ccs-tiny's TextSpan and CCS pages
    python benchmarks/machinery.py --pages ccs-tiny/ood:eval_seed=2 --repeat 3

For each page, alternately and `--repeat` times: the page's code cells as one plain Python script
(jupytext's reading of notebooks/EXPERIMENT.py, the parameters a run would inject, in a fresh
interpreter in an empty folder: imports included, no kernel, no notebook written), and `ccs run
MODEL EXPERIMENT -p KEY=VALUE` (a parameter other than the book's, so the page goes under outputs/
and the book is left alone; the decompositions and embeddings come from the warm cache either way).
The machinery is the difference of the medians: checking the parameters, starting the kernel,
papermill's cell protocol, writing and stamping the page. Run it with the cache warm (run each
page once before) and nothing else on the machine.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pages",
        nargs="+",
        default=["ccs-tiny/textspan:texts_per_head=4", "ccs-tiny/ccs:texts=4"],
        help="MODEL/EXPERIMENT:KEY=VALUE, the parameter that keeps the run off the book's page",
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
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
                run.append(timed(["ccs", "run", model, experiment, "-p", param], ROOT))
        c, r = statistics.median(cells), statistics.median(run)
        print(f"{name} ({param}): cells as a script {c:.1f} s, `ccs run` {r:.1f} s", end="")
        print(f", machinery {r - c:.1f} s (medians of {args.repeat})")


if __name__ == "__main__":
    main()
