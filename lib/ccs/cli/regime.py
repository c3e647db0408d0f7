"""`ccs regime`: the regime study (lib/ccs/data/regime.yaml): train and measure its configurations,
and write its page."""

from __future__ import annotations

import typer

from ccs.cli import app, bad, run_lock

regime_app = typer.Typer(help="The regime study: which recipe grows heads in the paper's categories.", no_args_is_help=True)
app.add_typer(regime_app, name="regime")


@regime_app.command("run")
def run(
    name: str = typer.Argument(..., help="A configuration of lib/ccs/data/regime.yaml."),
    pairs: int = typer.Option(None, min=1, help="Image-caption pairs (default: the study's budget)."),
    threads: int = typer.Option(None, min=1, help="torch CPU threads (default 1, or a resumed run's own)."),
    loader_workers: int = typer.Option(
        None,
        min=1,
        help="Processes rendering the batches (default 1, or a resumed run's own; several on a GPU). The data do not change.",
    ),
    full: bool = typer.Option(
        False,
        "--full",
        help="Train at the zoo's length (its 3,000,000 pairs, as `make train-tiny` does) instead of the study's short budget.",
    ),
    seed: int = typer.Option(None, min=0, help="Training seed (default: the study's)."),
) -> None:
    """Train a configuration for the study's budget or at full length (resuming an interrupted run
    from train-runs/regime/RUN) and write its measurements to book/regime/RUN.json, where RUN is NAME,
    NAME-full and/or NAME-sSEED."""
    from ccs import regime

    if name not in regime.study()["configurations"]:
        raise bad("NAME", f"{name!r} is not a configuration of the study; it has: {', '.join(regime.study()['configurations'])}.")
    with run_lock(regime.RUNS / regime.run_name(name, full, seed)):
        out = regime.run(name, pairs=pairs, threads=threads, loader_workers=loader_workers, full=full, seed=seed)
    typer.echo(
        f"{out['configuration']}: {out['high']} of {out['heads']} heads with true CCS 5, {out['low']} with CCS <= 1, "
        f"mean accuracy {out['mean_accuracy']:.3f} -> book/regime/{out['configuration']}.json"
    )


@regime_app.command("walk")
def walk(
    threads: int = typer.Option(None, min=1, help="torch CPU threads (default 1, or a resumed run's own)."),
    loader_workers: int = typer.Option(
        None,
        min=1,
        help="Processes rendering the batches (default 1, or a resumed run's own; several on a GPU). The data do not change.",
    ),
    runs: int = typer.Option(None, min=1, help="Train at most this many configurations (default: until the rule decides)."),
) -> None:
    """Walk the selection rule: train at full length (resumably) the configuration the rule waits for,
    then the next, until it chooses a recipe or every configuration in its rank is settled, and
    rewrite the study's page after each run. On a GPU one call can settle several."""
    from ccs import regime

    done = 0
    while (waiting := regime.next_full(regime.results())) is not None and (runs is None or done < runs):
        name = waiting["configuration"]
        typer.echo(f"next in the rule's rank without a full-length run: {name} (`ccs regime run {name} --full`)")
        with run_lock(regime.RUNS / regime.run_name(name, full=True)):
            out = regime.run(name, threads=threads, loader_workers=loader_workers, full=True)
        typer.echo(f"{out['configuration']}: {out['high']} of {out['heads']} heads with true CCS 5, {out['low']} with CCS <= 1")
        regime.page()
        done += 1
    chosen, why = regime.select(regime.results())
    typer.echo(f"the rule chooses {chosen['configuration']}" if chosen else f"the rule has not chosen a recipe: {why}")


@regime_app.command("page")
def page() -> None:
    """Write the study's page (book/regime.md) from book/regime/*.json."""
    from ccs import regime

    typer.echo(f"wrote {regime.page()}")


@regime_app.command("measure")
def measure(name: str = typer.Argument(..., help="A model of the zoo (`ccs models`).")) -> None:
    """Measure a shipped zoo model at its full training length: book/regime/zoo-NAME.json."""
    from ccs import models, regime

    if name not in models.zoo():
        raise bad("NAME", f"{name!r} is not a model of the zoo; it has: {', '.join(models.zoo())}.")
    out = regime.measure_zoo(name)
    typer.echo(f"{name}: {out['high']} of {out['heads']} heads with true CCS 5, {out['low']} with CCS <= 1")
