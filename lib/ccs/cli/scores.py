"""`ccs heads`: label every analysed head, judge its texts and print its CCS."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ccs.cli import app, bad, constant


def _records(path: Path) -> list[dict]:
    """TextSpan records from a JSON file, checked: a list of {layer, head, texts: [str, ...]}."""
    from ccs.cli import bad

    try:
        recs = json.loads(path.read_text())
    except ValueError as e:
        raise bad("--records", f"{path} is not JSON ({e})") from None
    if not isinstance(recs, list) or not recs:
        raise bad("--records", f"{path} must hold a non-empty JSON list of head records")
    for i, r in enumerate(recs):
        ok = (
            isinstance(r, dict)
            and isinstance(r.get("layer"), int)
            and isinstance(r.get("head"), int)
            and isinstance(r.get("texts"), list)
            and r["texts"]
            and all(isinstance(t, str) for t in r["texts"])
        )
        if not ok:
            raise bad(
                "--records",
                f"record {i} of {path} needs integer 'layer' and 'head' and a non-empty "
                "list of strings 'texts' (as `ccs textspan --json` writes)",
            )
    return recs


@app.command("heads")
def heads(
    model: str = typer.Option("ccs-tiny", help="Model name (see `ccs models`)."),
    backend: str = typer.Option("embedding", help="Labeler/judge: embedding (offline) or openai."),
    judge_model: str = typer.Option("gpt-4o-mini", help="Endpoint model of the openai backend."),
    timeout: float = typer.Option(
        constant("ccs.llm.endpoint", "TIMEOUT"), help="Seconds the openai backend waits for each reply."
    ),
    retries: int = typer.Option(
        constant("ccs.llm.endpoint", "RETRIES"),
        help="Retries of the openai backend per question (on timeouts, refused connections, 429/5xx and invalid answers).",
    ),
    max_invalid: float = typer.Option(
        constant("ccs.llm.endpoint", "MAX_INVALID"),
        help="The share of the openai "
        "backend's labels, or of its judgements, that may get no valid "
        "answer (those heads are flagged) before the command fails.",
    ),
    pool: str = typer.Option("world", help="TextSpan pool: 'world', 'textspan', a file or a URL."),
    calibration: str = typer.Option(
        "pool",
        help="The offline judge's calibration: 'pool' (the one for this pool "
        "and model, as the pages use), 'world', 'real' or 'lenient'.",
    ),
    images: int = typer.Option(1000, min=2, help="Concept-world images TextSpan decomposes."),
    seed: int = typer.Option(0, min=0, help="World sample seed."),
    untrained: bool = typer.Option(False, help="Random weights (for testing the mathematics)."),
    records: Path = typer.Option(
        None, exists=True, dir_okay=False, help="JSON list of TextSpan records (`ccs textspan --json`) instead."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """Label each analysed head from its TextSpan texts (`ccs textspan`, cached), judge every text,
    print the CCS per head.

    The openai backend reads OPENAI_API_KEY (and OPENAI_BASE_URL for other endpoints). An endpoint
    that cannot be reached, or keeps failing after the retries, ends the command with an error (exit
    code 1); the answers received are cached, so a rerun continues."""
    import pandas as pd

    from ccs import llm, scores, textspan

    recs = _records(records) if records else None  # a malformed file fails before any work
    try:  # the pages' factory: the same judge, so the same CCS, as the book shows
        judge = llm.make(
            backend,
            pool=pool,
            calibration=calibration,
            scored=model,
            **(
                {"model": judge_model, "timeout": timeout, "retries": retries, "max_invalid": max_invalid}
                if backend == "openai"
                else {}
            ),
        )
    except ValueError as e:
        if "calibration must be" not in str(e):
            raise  # the backend's own checks (timeout, retries) keep their message and exit code
        raise bad("--calibration", str(e)) from None
    if recs is None:
        recs = textspan.analyse(model, images=images, pool=pool, seed=seed, untrained=untrained, progress=False).records()
    table = scores.score_heads(recs, judge)  # an unreachable endpoint ends here, with `error: ...`

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
