"""`ccs models` and `ccs fetch`."""

from __future__ import annotations

import json

import typer

from ccs.cli import app


@app.command("models")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON records.")) -> None:
    """List the registered models: the project's tiny CLIP and the paper's six."""
    from ccs import models

    rows = [models.describe(name) for name in models.names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    cols = ["name", "open_clip", "pretrained", "layers", "heads", "analysed_layers", "weights"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    typer.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        typer.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


@app.command()
def fetch(name: str = typer.Argument(..., help="Registered model name (see `ccs models`).")) -> None:
    """Download a paper model's weights into the Hugging Face cache (needs the network; fails within
    seconds when the hub cannot be reached)."""
    from ccs import models

    models.spec(name)  # an unknown name fails here, listing the known ones
    typer.echo(f"{name}: {models.fetch(name)}")
