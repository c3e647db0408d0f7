"""The book's "paper vs this book" page: for each of the paper's six models, the paper's published
numbers (``data/paper.yaml``) beside the numbers of the runs present in ``book/runs/<model>/*.json``,
blank where the book has no run.

The page is generated, never hand-written: `write` renders it into the file named by ``paper_tables``
in pipeline.yaml (`ccs paper-tables`; the Snakefile rewrites it when its content changes, so a fresh
clone leaves it untouched). Rows are built by `ccs.pruning.beside`, the same function that puts this
run's numbers beside the paper's on the experiment pages.

**Where a run's numbers come from.** Each page's JSON may hold ``paper_tables``:
``{<paper.yaml table>: {<dataset>: [values in the paper's column order]}}``, the run's own row of
that table (`ccs.pruning.run_values` builds it). The CCS head counts come from the ``ccs`` page's
``category_counts``. A run made with random weights is shown, but flagged as such.

**Which protocol made each number** is said on the page: the paper's (`PROTOCOL`, the evaluation of
its code, which `ccs.datasets` and `ccs.evaluate` follow), and per run what its pages record (images
per test split, the video protocol: `run_protocol`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ccs import models, pipeline


@dataclass(frozen=True)
class Table:
    key: str  # the table's name in paper.yaml
    title: str
    names: tuple[str, ...]  # the conditions, in the paper's column order
    experiment: str | None  # the book's page that measures it (None: not measured by this book)
    shape: str = "model"  # paper.yaml's nesting: "model" {model: {dataset: v}}, "dataset" {dataset: {model: v}},
    # "single:<dataset>" {model: v}, or "counts" {model: {name: n}}


TABLES = (
    Table("head_counts", "Heads per CCS category (of the analysed heads)", ("high", "moderate", "low"), "ccs",
          "counts"),
    Table("pruning_high_low", "Soft pruning, zero-shot top-1 %", ("original", "high", "low"), "pruning"),
    Table("pruning_high_random", "High against random pruning, zero-shot top-1 %", ("high", "random"), "pruning",
          "dataset"),
    Table("ood_datasets", "Shifted datasets, zero-shot top-1 %", ("original", "high", "low"), "ood"),
    Table("concept_location_country211", "Concept-specific pruning, Country-211 top-1 %",
          ("original", "locations", "animals"), "concepts", "single:Country-211"),
    Table("concept_objects_cifar10", "Concept-specific pruning, CIFAR-10 objects subset top-1 %",
          ("original", "objects", "locations", "animals"), "concepts", "single:CIFAR-10 objects"),
    Table("video_t2v_r1", "Text-to-video retrieval R@1 %", ("original", "high", "low", "random"), "video",
          "dataset"),
    Table("fairface_maxskew", "Bias: FairFace MaxSkew (lower is better; not measured by this book)",
          ("original", "high", "low"), None),
)
COUNT_NAMES = {"high": "high", "moderate": "medium", "low": "low"}  # this book's names -> paper.yaml's
PROTOCOL = [
    "**How the numbers were made.** The paper's numbers come from its code (avinashsai/CCS-CLIP); this",
    "book's pages measure by the same protocol (`ccs.datasets`, `ccs.evaluate`):",
    "",
    "- *zero-shot tables* (soft pruning, high against random, shifted datasets, concept-specific): CLIP's",
    "  per-dataset prompt templates and class names, as the clip-benchmark package lists them and the",
    "  paper's code uses them (18 templates for CIFAR-10/100, one for Food-101, five for Country-211,",
    "  CLIP's 80 ImageNet templates for ImageNet-A/-R; the paper's code writes 20 of the 211 country",
    "  names in ISO style, e.g. \"Viet Nam\", where the book uses CLIP's), each class the mean of its",
    "  prompts' normalised embeddings, top-1 over the test split (a run: the number of its images given",
    "  below, drawn at random). Oxford-Pets is the paper's listing: every image of the release,",
    "  labelled by the first word of its file name (35 classes), with the CIFAR templates",
    "  (`Oxford-Pets-paper` in `ccs data`). One difference remains: on the CIFAR-10 objects subset the",
    "  paper's code chooses among its 4 classes, the concepts page among all 10;",
    "- *text-to-video R@1*: the paper's protocol: the first caption of each video ranks every video of the",
    "  test split, 12 frames a video (32 for DiDeMo) sampled uniformly, the mean of the normalised frame",
    "  embeddings not renormalised. A run fills this column only when it ranked the whole split, and",
    "  states its protocol (`paper`, or `clip4clip`: every caption, the mean renormalised) below.",
]


def run_protocol(summaries: dict[str, dict]) -> str | None:
    """What a model's pages record about how they measured (images per test split, the video
    protocol), as one sentence; None when they record nothing of it."""
    parts = []
    images = sorted({int(s["eval_images"]) for s in summaries.values() if s.get("eval_images")})
    if images:
        parts.append(f"zero-shot numbers on {' / '.join(map(str, images))} images of each test split")
    if "video" in summaries:
        protocol = summaries["video"].get("protocol")
        parts.append(f"video retrieval by the `{protocol}` protocol" if protocol else
                     "video retrieval by a page older than the protocol parameter (every caption, the mean renormalised)")
    return f"How this run measured: {'; '.join(parts)}." if parts else None


def published(table: Table, paper: dict | None = None) -> dict:
    """The paper's numbers of `table` as {model: {dataset: [values]}}."""
    raw = (paper or models.paper())[table.key]
    if table.shape == "dataset":
        out: dict = {}
        for ds, per in raw.items():
            for m, v in per.items():
                out.setdefault(m, {})[ds] = v
        return out
    if table.shape.startswith("single:"):
        return {m: {table.shape.split(":", 1)[1]: v} for m, v in raw.items()}
    if table.shape == "counts":
        return {m: {"heads": [v[COUNT_NAMES[n]] for n in table.names]} for m, v in raw.items()}
    return raw


def runs_of(model: str, runs_dir: Path) -> dict[str, dict]:
    """The JSON summaries of `model`'s pages in `runs_dir` (book/runs): {experiment: summary}."""
    folder = runs_dir / model
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def run_numbers(table: Table, summaries: dict[str, dict]) -> dict:
    """One model's row(s) of `table` from its pages' JSON: {dataset: [values]} (empty when none)."""
    if table.experiment is None or table.experiment not in summaries:
        return {}
    summary = summaries[table.experiment]
    if table.shape == "counts":
        counts = summary.get("category_counts") or {}
        return {"heads": [counts.get(n) for n in table.names]} if counts else {}
    return dict((summary.get("paper_tables") or {}).get(table.key) or {})


def _cell(v, decimals: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{float(v):.{decimals}f}"


def markdown_table(frame, first: str = "dataset", decimals: int = 2) -> list[str]:
    """A DataFrame from `ccs.pruning.beside` (one model) as a MyST table: the dataset, then for each
    condition the paper's number and this run's side by side."""
    names = [c.split(": ", 1)[1] for c in frame.columns if c.startswith("paper: ")]
    header = [first] + [f"{n}: {who}" for n in names for who in ("paper", "run")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--"] + ["--:"] * (len(header) - 1)) + "|"]
    for (_, ds), row in frame.iterrows():
        cells = [ds] + [_cell(row.get(f"{who}: {n}"), decimals) for n in names for who in ("paper", "this run")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def page(runs_dir: Path | None = None, paper: dict | None = None) -> str:
    """The page's MyST markdown."""
    from ccs.pruning import beside

    runs_dir = runs_dir or pipeline.ROOT / "book" / "runs"
    paper = paper or models.paper()
    in_book = {(r.model, r.experiment) for r in pipeline.runs()} if pipeline.GRID.is_file() else set()
    out = [
        "<!-- Written by `ccs paper-tables` (ccs.paper_tables) from lib/ccs/data/paper.yaml and book/runs/*/*.json;",
        "     do not edit: `make book` rewrites it. -->",
        "(paper-tables)=",
        "# The paper's numbers beside this book's",
        "",
        "For each of the paper's six models, every table the paper publishes, with the number of this",
        "book's run of that model beside it (*run*), blank where the book has no run. The book you are",
        "reading runs the models listed in `pipeline.yaml`; a paper model gets numbers here once it is",
        "added there and its pages are executed, which needs its weights and datasets (the runbook,",
        "{doc}`reproduce`, says how). The tiny model's own results are on the experiment pages.",
        "",
        "A column names the heads pruned (*original*: none) and whose number it is: the paper's, or",
        "this book's run. The paper's numbers are those of `lib/ccs/data/paper.yaml`.",
        "",
        *PROTOCOL,
        "",
    ]
    for model in paper["models"]:
        summaries = runs_of(model, runs_dir)
        out += [f"## {model}", ""]
        if summaries:
            pages = ", ".join(f"{{doc}}`{e} <runs/{model}/{e}>`" if (model, e) in in_book else f"`{e}`"
                              for e in summaries)
            random = sorted(e for e, s in summaries.items() if s.get("weights") == "random")
            out += [f"Pages of this run: {pages}."]
            if random:
                out += [f"**Random weights** in {', '.join(random)}: those numbers test the code, not the model."]
            how = run_protocol(summaries)
            if how:
                out += [how]
            out += [""]
        else:
            out += ["No run of this model in this book: the *run* columns are blank.", ""]
        for table in TABLES:
            pub = published(table, paper)
            if model not in pub:
                continue
            frame = beside({model: pub[model]}, {model: run_numbers(table, summaries)}, table.names)
            out += [f"**{table.title}**", "", *markdown_table(frame, *(("", 0) if table.shape == "counts" else ("dataset", 2))), ""]
    return "\n".join(out).rstrip() + "\n"


def target(path: Path | None = None) -> Path | None:
    """The page's file, from pipeline.yaml's ``paper_tables`` (None when the grid names none)."""
    name = pipeline.grid(path).get("paper_tables")
    return pipeline.ROOT / name if name else None


def write(out: Path | None = None, runs_dir: Path | None = None) -> Path | None:
    """Write the page (to `out`, or where pipeline.yaml says) when its content changed; return its path."""
    out = out or target()
    if out is None:
        return None
    text = page(runs_dir)
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)
    return out
