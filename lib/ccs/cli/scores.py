"""`ccs heads`: label every analysed head, judge its texts and print its CCS."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from ccs import llm, scores
from ccs.cli import app


def textspan_records(model: str, pool: str | None = None) -> list[dict]:
    """The TextSpan records of a model's analysed heads (layer, head, texts, ...), from the cached
    TextSpan step of the pipeline."""
    from ccs import textspan

    run = getattr(textspan, "results", None)  # the cached model-level step of issue #4
    if run is None:
        raise RuntimeError("this checkout has no cached TextSpan step (ccs.textspan.results); "
                           "pass the records of a TextSpan run with --records FILE")
    return run(model) if pool is None else run(model, pool=pool)


@app.command("heads")
def heads(
    model: str = typer.Option("ccs-tiny", help="Model name (see `ccs models`)."),
    backend: str = typer.Option("embedding", help="Labeler/judge: embedding (offline) or openai."),
    judge_model: str = typer.Option("gpt-4o-mini", help="Endpoint model of the openai backend."),
    pool: str = typer.Option(None, help="Text pool of the TextSpan run (default: the model's)."),
    records: Path = typer.Option(None, exists=True, dir_okay=False,
                                 help="JSON list of TextSpan records instead of the cached run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """Label each analysed head from its 5 TextSpan texts, judge every text, print CCS per head.

    The openai backend reads OPENAI_API_KEY (and OPENAI_BASE_URL for other endpoints)."""
    try:
        recs = json.loads(records.read_text()) if records else textspan_records(model, pool)
        judge = llm.backend(backend, **({"model": judge_model} if backend == "openai" else {}))
    except (RuntimeError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None
    table = scores.score_heads(recs, judge)
    table["category"] = table["ccs"].map(scores.category)
    cols = ["layer", "head", "name", "label", "ccs", "category", "flagged", "texts", "judgements"]
    if as_json:
        out = table[cols + [c for c in ("concepts",) if c in table]].to_dict("records")
        for r in out:
            r["ccs"] = None if r["ccs"] != r["ccs"] else int(r["ccs"])  # NaN is not JSON
        typer.echo(json.dumps(out, indent=2))
        return
    for r in table.itertuples():
        ccs = "-" if r.flagged else int(r.ccs)
        typer.echo(f"{r.name:8} {r.label:14} CCS {ccs}  {r.category or ''}")
        for t, j in zip(r.texts, r.judgements):
            typer.echo(f"    {'✓' if j else '✗'} {t}")
