"""`ccs run` (one notebook, any parameters) and `ccs toc`."""
from __future__ import annotations

import typer
import yaml

from ccs import pipeline
from ccs.cli import app


@app.command("run")
def run_notebook(
    model: str,
    experiment: str,
    param: list[str] = typer.Option([], "-p", "--param", help="KEY=VALUE (YAML value); repeatable."),
) -> None:
    """Execute notebooks/EXPERIMENT.py for MODEL into book/runs/MODEL/EXPERIMENT.ipynb."""
    from ccs import models

    try:
        models.spec(model)  # unknown names fail here, before a kernel starts
    except models.UnknownModelError as e:
        raise typer.BadParameter(str(e)) from None
    extra = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        extra[key] = yaml.safe_load(value)
    try:
        run = pipeline.find(model, experiment)
    except KeyError:  # not in the grid: still runnable, with the notebook's own defaults
        run = pipeline.Run(model, experiment)
        if not run.source.is_file():
            raise typer.BadParameter(f"no notebook {run.source.relative_to(pipeline.ROOT)}") from None
    typer.echo(pipeline.execute(run, extra=extra))


@app.command()
def toc(check: bool = typer.Option(False, help="Fail if _toc.yml is out of date.")) -> None:
    """Write _toc.yml from pipeline.yaml."""
    if check:
        if pipeline.TOC.read_text() != pipeline.toc_text():
            typer.echo("_toc.yml is out of date: run `ccs toc`.", err=True)
            raise typer.Exit(1)
        return
    typer.echo(pipeline.write_toc())


@app.command()
def static() -> None:
    """Copy the book's offline assets (MathJax) into _static/."""
    typer.echo(pipeline.install_static())
