"""`ccs run` (one notebook, any parameters), `ccs toc` and `ccs paper-tables`."""

from __future__ import annotations

import typer

from ccs.cli import app, bad


@app.command("run")
def run_notebook(
    model: str,
    experiments: list[str] = typer.Argument(..., metavar="EXPERIMENT..."),
    param: list[str] = typer.Option(
        [],
        "-p",
        "--param",
        help="KEY=VALUE (YAML value); repeatable. The keys and their ranges are the notebook's parameters cell.",
    ),
    exit_with_parent: bool = typer.Option(
        False,
        "--exit-with-parent",
        help="Stop (leaving the page as it "
        "was) when the process that started this one dies, even by "
        "SIGKILL (the Snakefile passes it, with that process's id in "
        "CCS_PARENT_PID).",
    ),
) -> None:
    """Execute notebooks/EXPERIMENT.py for MODEL. With the parameters of pipeline.yaml the result is
    the book's page, book/runs/MODEL/EXPERIMENT.ipynb; with any other parameters it goes to a folder of
    its own under outputs/ (the line printed says where), never over a page of the book. Several
    experiments run one after the other in one kernel, each page written when it is done (`make book`
    runs a model's pages so). Every parameter is checked against its declaration before a kernel
    starts; an error in a cell prints the error's message (the kernel's traceback with
    `ccs --debug run ...`)."""
    import yaml

    from ccs import models, pipeline

    if exit_with_parent:  # against the parent that started this process (CCS_PARENT_PID), if given
        from ccs import lifeline

        pipeline.exit_with_parent(parent=lifeline.parent_from_env())
    models.spec(model)  # unknown names fail here, before a kernel starts
    extra = {}
    for item in param:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise bad("-p", f"expected KEY=VALUE, got {item!r}.")
        if key == "model":
            command = f"ccs run {value.strip() or 'MODEL'} {' '.join(experiments)}"
            raise bad("-p", f"model: the model is the first argument, not a parameter (`{command}`).")
        try:
            extra[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = " ".join(str(getattr(e, "problem", None) or e).split())
            raise bad(
                "-p", f"{key}: {value!r} is not a YAML value ({problem}); quote a string, write a list as [a, b]."
            ) from None
    runs = []
    for experiment in experiments:
        try:
            runs.append(pipeline.find(model, experiment))
        except KeyError:  # not in the grid: still runnable, with the notebook's own defaults
            runs.append(pipeline.Run(model, experiment))
            if not runs[-1].source.is_file():
                raise typer.BadParameter(f"no notebook {runs[-1].source.relative_to(pipeline.ROOT)}") from None
    try:  # execution checks every parameter before a kernel starts: one given here is the -p option's fault
        for out in pipeline.execute_in_turn(runs, extra=extra):
            typer.echo(out)
    except pipeline.ParameterError as e:
        if e.name in extra:
            raise bad("-p", str(e)) from None
        raise


@app.command()
def stale() -> None:
    """List the book's pages that are missing or out of date (their source, the library, their
    parameters or the weights changed since they were executed); `make book` re-runs exactly these."""
    from ccs import pipeline

    for run in pipeline.stale():
        typer.echo(run.notebook.relative_to(pipeline.ROOT))


@app.command()
def toc(check: bool = typer.Option(False, help="Fail if _toc.yml is out of date.")) -> None:
    """Write _toc.yml from pipeline.yaml."""
    from ccs import pipeline

    if check:
        if pipeline.TOC.read_text() != pipeline.toc_text():
            typer.echo("_toc.yml is out of date: run `ccs toc`.", err=True)
            raise typer.Exit(1)
        return
    typer.echo(pipeline.write_toc())


@app.command("paper-tables")
def paper_tables(check: bool = typer.Option(False, help="Fail if the page is out of date.")) -> None:
    """Write the page of the paper's numbers beside this book's runs (pipeline.yaml's `paper_tables`)
    from paper.yaml and book/runs/*/*.json."""
    from ccs import paper_tables as pt
    from ccs import pipeline

    out = pt.target()
    if out is None:
        typer.echo("pipeline.yaml names no paper_tables page.", err=True)
        raise typer.Exit(1)
    if check:
        if not out.is_file() or out.read_text() != pt.page():
            typer.echo(f"{out.relative_to(pipeline.ROOT)} is out of date: run `ccs paper-tables`.", err=True)
            raise typer.Exit(1)
        return
    typer.echo(pt.write(out))


@app.command()
def static() -> None:
    """Copy the book's offline assets (MathJax) into _mathjax/."""
    from ccs import pipeline

    typer.echo(pipeline.install_static())


@app.command("replication")
def replication(check: bool = typer.Option(False, help="Fail if the page is out of date.")) -> None:
    """Write the replication page: each claim per trained model and set source, pooled across models
    (pipeline.yaml's `replication`), from the runs' JSONs."""
    from ccs import pipeline
    from ccs import replication as rep

    out = rep.target()
    if out is None:
        typer.echo("pipeline.yaml names no replication page.", err=True)
        raise typer.Exit(1)
    if check:
        if not out.is_file() or out.read_text() != rep.page(list(pipeline.grid()["models"]), pipeline.ROOT / "book" / "runs"):
            typer.echo(f"{out.relative_to(pipeline.ROOT)} is out of date: run `ccs replication`.", err=True)
            raise typer.Exit(1)
        return
    typer.echo(f"wrote {rep.write().relative_to(pipeline.ROOT)}")
