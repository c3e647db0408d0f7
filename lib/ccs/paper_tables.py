"""The book's "paper vs this book" page: for each claim (each table the paper publishes), the paper's
numbers for its six models (``data/paper.yaml``), the runs of those models present in
``book/runs/<model>/*.json`` beside them, and this book's trained concept-world models on the
analogous measure (the replication page's rows, both sources of head sets).

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
    Table("head_counts", "Heads per CCS category (of the analysed heads)", ("high", "moderate", "low"), "ccs", "counts"),
    Table("pruning_high_low", "Soft pruning, zero-shot top-1 %", ("original", "high", "low"), "pruning"),
    Table("pruning_high_random", "High against random pruning, zero-shot top-1 %", ("high", "random"), "pruning", "dataset"),
    Table("ood_datasets", "Shifted datasets, zero-shot top-1 %", ("original", "high", "low"), "ood"),
    Table(
        "concept_location_country211",
        "Concept-specific pruning, Country-211 top-1 %",
        ("original", "locations", "animals"),
        "concepts",
        "single:Country-211",
    ),
    Table(
        "concept_objects_cifar10",
        "Concept-specific pruning, CIFAR-10 objects subset top-1 %",
        ("original", "objects", "locations", "animals"),
        "concepts",
        "single:CIFAR-10 objects",
    ),
    Table("video_t2v_r1", "Text-to-video retrieval R@1 %", ("original", "high", "low", "random"), "video", "dataset"),
    Table(
        "fairface_maxskew",
        "Bias: FairFace MaxSkew (lower is better; not measured by this book)",
        ("original", "high", "low"),
        None,
    ),
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
    '  names in ISO style, e.g. "Viet Nam", where the book uses CLIP\'s), each class the mean of its',
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
        parts.append(
            f"video retrieval by the `{protocol}` protocol"
            if protocol
            else "video retrieval by a page older than the protocol parameter (every caption, the mean renormalised)"
        )
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


# The claim of the replication page that measures, on the concept-world models, what a paper table measures
ANALOGUE = {
    "head_counts": "ccs-high-share",
    "pruning_high_low": "pruning-high-vs-low",
    "pruning_high_random": "pruning-high-vs-random",
    "ood_datasets": "shifted-high-vs-low",
    "concept_location_country211": "concept-scene-vs-shape",
    "concept_objects_cifar10": "concept-shape-vs-scene",
    "video_t2v_r1": "video-high-vs-random",
}


def markdown_table(frame, first: str = "dataset", decimals: int = 2, runs: bool = True) -> list[str]:
    """A DataFrame from `ccs.pruning.beside` (rows: model, dataset) as a MyST table: the model and the
    dataset, then for each condition the paper's number and, with `runs`, the book's run beside it."""
    names = [c.split(": ", 1)[1] for c in frame.columns if c.startswith("paper: ")]
    whos = ("paper", "run") if runs else ("paper",)
    header = ["model", first] + [f"{n}: {who}" for n in names for who in whos]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--", ":--"] + ["--:"] * (len(header) - 2)) + "|"]
    for (model, ds), row in frame.iterrows():
        cells = [model, ds] + [
            _cell(row.get(f"{who}: {n}"), decimals) for n in names for who in ("paper", "this run")[: len(whos)]
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def analogue_table(table: Table, trained: list[str], runs_dir: Path) -> list[str]:
    """The book's trained concept-world models on the claim a paper table is about: per model, the
    effect with its interval and verdict for both sources of head sets (the replication page's rows)."""
    from ccs import replication

    key = ANALOGUE.get(table.key)
    claim = next((c for c in replication.CLAIMS if c.key == key), None)
    if claim is None:
        return ["*This book's trained models:* not measured (no concept-world analogue).", ""]
    rows = [r for r in replication.collect(trained, runs_dir) if r["claim"] == key]
    if not rows:
        return ["*This book's trained models:* no run records this claim yet.", ""]
    out = [
        f"*This book's trained models* (concept world; {claim.effect}; see {{doc}}`replication`):",
        "",
        "| model | " + " | ".join(f"{s} sets | verdict" for s in replication.SOURCES) + " |",
        "|:--|" + "--:|:--|" * len(replication.SOURCES),
    ]
    for model in trained:
        cells = []
        for source in replication.SOURCES:
            r = next((r for r in rows if r["model"] == model and r["source"] == source), None)
            cells += [replication._fmt(claim, r["estimate"], r["low"], r["high"]), r["verdict"]] if r else ["", ""]
        if any(cells):
            out.append(f"| {model} | " + " | ".join(cells) + " |")
    return out + [""]


def category_table(trained: list[str], runs_dir: Path) -> list[str]:
    """The book's trained models' heads in the paper's two categories (CCS 5, CCS <= 1), by this run's
    CCS and by the ground truth's, from their pruning pages: whether the paper's test can be formed."""
    rows = []
    for model in trained:
        path = runs_dir / model / "pruning.json"
        rec = json.loads(path.read_text()) if path.is_file() else {}
        by = rec.get("category_counts_by_source") or {}
        heads = len(rec.get("per_head") or [])
        if not by or not heads:
            continue
        cells = []
        for source in ("this run", "ground truth"):
            c = by.get(source)
            cells += (
                [f"{c['high']} ({100 * c['high'] / heads:.0f} %)", f"{c['low']} ({100 * c['low'] / heads:.0f} %)"]
                if c
                else ["", ""]
            )
        formed = all(c["high"] >= 2 and c["low"] >= 2 for c in by.values())
        rows.append(f"| {model} | {heads} | " + " | ".join(cells) + f" | {'yes' if formed else 'cannot be formed'} |")
    if not rows:
        return []
    return [
        "*This book's trained models*, heads in the paper's categories (of the analysed heads; the paper's",
        "high and low columns above are the same categories):",
        "",
        "| model | analysed heads | CCS 5, this run | CCS \u2264 1, this run | CCS 5, ground truth | "
        "CCS \u2264 1, ground truth | the paper's test |",
        "|:--|--:|--:|--:|--:|--:|:--|",
        *rows,
        "",
    ]


def page(runs_dir: Path | None = None, paper: dict | None = None) -> str:
    """The page's MyST markdown: one section per claim (per table of the paper), the paper's six
    models side by side, this book's runs of a paper model beside them where there are any, and this
    book's trained concept-world models on the analogous measure."""
    from ccs.pruning import beside

    runs_dir = runs_dir or pipeline.ROOT / "book" / "runs"
    paper = paper or models.paper()
    grid_models = list(pipeline.grid()["models"]) if pipeline.GRID.is_file() else []
    trained = [m for m in grid_models if m in models.zoo()]
    summaries = {m: runs_of(m, runs_dir) for m in paper["models"]}
    ran = [m for m in paper["models"] if summaries[m]]
    out = [
        "<!-- Written by `ccs paper-tables` (ccs.paper_tables) from the paper's published numbers and the",
        "     runs' records; do not edit: `make book` rewrites it. -->",
        "(paper-tables)=",
        "# The paper's numbers beside this book's",
        "",
        "One section per claim of the paper: its published numbers for its six CLIP models side by side,",
        "and this book's trained concept-world models on the analogous measure, with both sources of head",
        "sets (this run's CCS and the concept world's ground truth). A paper model's *run* column fills in",
        "once that model is added to the book's grid and its pages are executed, which needs its weights",
        "and datasets ({doc}`reproduce` says how). "
        + (
            f"Paper models run in this book: {', '.join(ran)}."
            if ran
            else "This book runs none of the paper's models: their columns hold the paper's numbers only."
        ),
        "",
        *PROTOCOL,
        "",
    ]
    for model in ran:
        random = sorted(e for e, s in summaries[model].items() if s.get("weights") == "random")
        how = run_protocol(summaries[model])
        out += [
            f"*{model}*: "
            + " ".join(
                x
                for x in (
                    f"**random weights** in {', '.join(random)}: those numbers test the code, not the model." if random else "",
                    how or "",
                )
                if x
            ),
            "",
        ]
    for table in TABLES:
        pub = published(table, paper)
        frame = beside(pub, {m: run_numbers(table, summaries[m]) for m in pub} if ran else None, table.names)
        out += [
            f"## {table.title}",
            "",
            *markdown_table(frame, *(("", 0) if table.shape == "counts" else ("dataset", 2)), runs=bool(ran)),
            "",
            *(category_table(trained, runs_dir) if table.key == "head_counts" else []),
            *analogue_table(table, trained, runs_dir),
        ]
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
