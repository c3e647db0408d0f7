"""`ccs heads`: label every analysed head, judge its texts and print its CCS."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from ccs import llm, scores
from ccs.cli import app


@app.command("heads")
def heads(
    model: str = typer.Option("ccs-tiny", help="Model name (see `ccs models`)."),
    backend: str = typer.Option("embedding", help="Labeler/judge: embedding (offline) or openai."),
    judge_model: str = typer.Option("gpt-4o-mini", help="Endpoint model of the openai backend."),
    timeout: float = typer.Option(llm.TIMEOUT, help="Seconds the openai backend waits for each reply."),
    retries: int = typer.Option(llm.RETRIES, help="Retries of the openai backend per question (on "
                                "timeouts, refused connections, 429/5xx and invalid answers)."),
    pool: str = typer.Option("world", help="TextSpan pool: 'world', 'textspan', a file or a URL."),
    images: int = typer.Option(1000, help="Concept-world images TextSpan decomposes."),
    seed: int = typer.Option(0, help="World sample seed."),
    untrained: bool = typer.Option(False, help="Random weights (for testing the mathematics)."),
    records: Path = typer.Option(None, exists=True, dir_okay=False,
                                 help="JSON list of TextSpan records (`ccs textspan --json`) instead."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """Label each analysed head from its TextSpan texts (`ccs textspan`, cached), judge every text,
    print the CCS per head.

    The openai backend reads OPENAI_API_KEY (and OPENAI_BASE_URL for other endpoints). An endpoint
    that cannot be reached, or keeps failing after the retries, ends the command with an error (exit
    code 1); the answers received are cached, so a rerun continues."""
    from ccs import decompose, models, pools, textspan

    try:
        judge = llm.backend(backend, **({"model": judge_model, "timeout": timeout, "retries": retries}
                                        if backend == "openai" else {}))
        recs = json.loads(records.read_text()) if records else textspan.analyse(
            model, images=images, pool=pool, seed=seed, untrained=untrained, progress=False).records()
    except (RuntimeError, ValueError, models.UnknownModelError, models.WeightsNotFoundError,
            pools.PoolNotAvailableError, decompose.DecompositionError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    try:
        table = scores.score_heads(recs, judge)
    except (llm.EndpointError, llm.InvalidAnswer) as e:  # no answer, or a judge that never answers 0/1
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    table["category"] = pd.Series([scores.category(c) or "" for c in table["ccs"]], dtype=object)
    cols = ["layer", "head", "name", "label", "ccs", "category", "flagged", "texts", "judgements"]
    if as_json:
        out = table[cols + [c for c in ("concepts",) if c in table]].to_dict("records")
        for r in out:
            r["ccs"] = None if r["ccs"] != r["ccs"] else int(r["ccs"])  # NaN is not JSON
            r["category"] = r["category"] or None
        typer.echo(json.dumps(out, indent=2))
        return
    for r in table.itertuples():
        ccs = "-" if r.flagged else int(r.ccs)
        typer.echo(f"{r.name:8} {r.label:14} CCS {ccs}  {r.category}")
        for t, j in zip(r.texts, r.judgements):
            typer.echo(f"    {'✓' if j else '✗'} {t}")
