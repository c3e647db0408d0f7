"""`ccs data` (which of the paper's datasets are on this machine, and where each one goes), `ccs data
--check` (open every file they list) and `ccs data fetch NAME` (download what torchvision can download)."""

from __future__ import annotations

import json

import typer

from ccs.cli import app

data_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
    help="The paper's datasets: where each one goes under the data root ($CCS_DATA), "
    "whether it is present, and `fetch` for those torchvision can download.",
)
app.add_typer(data_app, name="data")


@data_app.callback()
def list_data(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
    check: bool = typer.Option(
        False,
        "--check",
        help="Open every file each present dataset lists "
        "(decode its images, find and open its videos): slower; exit 1 if any "
        "is missing or damaged.",
    ),
) -> None:
    """List every dataset, its expected path under the data root and whether it is present (its
    required files exist; with --check, every file it lists opens)."""
    if ctx.invoked_subcommand is not None:
        return
    from ccs import datasets

    rows = [datasets.info(name) for name in datasets.names()]
    if check:
        for r in rows:
            r["check"] = datasets.check(r["name"], progress=not as_json) if r["present"] else None
    damaged = [r for r in rows if r.get("check") and not r["check"]["ok"]]
    if as_json:
        typer.echo(json.dumps({"root": str(datasets.root()), "datasets": rows}, indent=2))
        if damaged:
            raise typer.Exit(1)
        return
    typer.echo(f"data root: {datasets.root()} (set $CCS_DATA to change it)")

    def status(r):
        if not r["present"]:
            return "no"
        if r.get("check") is None:
            return "yes"
        return f"yes, {r['check']['checked']} checked" if r["check"]["ok"] else "DAMAGED"

    table = [
        {"name": r["name"], "kind": r["kind"], "present": status(r), "get": r["fetch"] or "by hand", "layout": r["layout"]}
        for r in rows
    ]
    cols = list(table[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in table)) for c in cols}
    typer.echo("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in table:
        typer.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip())
    missing = [r for r in rows if not r["present"]]
    if missing:
        typer.echo("\nMissing:")
        for r in missing:
            typer.echo(f"  {r['name']}: {r['how']}")
    if damaged:
        typer.echo("\nDamaged or incomplete (what --check could not open):")
        for r in damaged:
            c = r["check"]
            more = c["problem_count"] - len(c["problems"])
            typer.echo(f"  {r['name']}: {c['problem_count']} problem(s); {r['how']}")
            for why in c["problems"]:
                typer.echo(f"    {why}")
            if more:
                typer.echo(f"    ... and {more} more")
        raise typer.Exit(1)
    if check:
        checked = [r["name"] for r in rows if r.get("check")]
        typer.echo(f"\nEvery file of {', '.join(checked)} opened." if checked else "\nNo dataset is present: nothing to check.")


@data_app.command("fetch")
def fetch(name: str = typer.Argument(..., help="Dataset name (see `ccs data`).")) -> None:
    """Download a dataset torchvision can download (CIFAR-10, CIFAR-100, Food-101, Country-211,
    Oxford-Pets) into the data root; for the others, say where to get it and where to put it."""
    from ccs import datasets

    datasets.spec(name)  # an unknown name fails here, listing the known ones
    typer.echo(f"{datasets.spec(name).name}: {datasets.fetch(name)}")
