"""`ccs textspan` (describe each head by texts) and `ccs pool ...` (description pools)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from ccs.cli import app

pool_app = typer.Typer(no_args_is_help=True, help="Text description pools for TextSpan.")
app.add_typer(pool_app, name="pool")


@app.command()
def textspan(
    model: str = typer.Option("ccs-tiny", help="Registered model name (see `ccs models`)."),
    texts: int = typer.Option(5, help="Texts per head."),
    images: int = typer.Option(1000, help="Concept-world images to decompose."),
    pool: str = typer.Option("world", help="'world', 'textspan', a pool file or a URL."),
    layers: int = typer.Option(4, help="Analyse the heads of the last LAYERS layers."),
    rank: int = typer.Option(0, help="Rank of the text projection (0: the head dimension)."),
    seed: int = typer.Option(0, help="World sample seed."),
    convention: str = typer.Option("centred", help="How ln_post is split: centred | textspan."),
    untrained: bool = typer.Option(False, help="Random weights (for testing the mathematics)."),
    download: bool = typer.Option(False, help="Download a URL pool if not cached."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """TextSpan: each analysed head's texts, in selection order, with the variance they explain."""
    from ccs import decompose, models, pools
    from ccs import textspan as ts

    try:
        a = ts.analyse(model, images=images, pool=pool, layers=layers, texts=texts,
                       rank=rank or None, seed=seed, untrained=untrained, download=download,
                       convention=convention, progress=not as_json)
    except (models.UnknownModelError, models.WeightsNotFoundError, pools.PoolNotAvailableError,
            decompose.DecompositionError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    records = a.records()
    if as_json:
        typer.echo(json.dumps(records, indent=1))
        return
    for r in records:
        typer.echo(f"L{r['layer']}.H{r['head']}  explained {r['explained']:.2f}")
        for t, v in zip(r["texts"], r["variance"]):
            typer.echo(f"    {v:5.2f}  {t}")


@pool_app.command("fetch")
def pool_fetch(spec: str = typer.Argument(..., help="'textspan' or a URL.")) -> None:
    """Download a pool file into the cache (needs the network)."""
    from ccs import pools

    try:
        pool = pools.load(spec, download=True)
    except pools.PoolNotAvailableError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{spec}: {len(pool)} descriptions")


@pool_app.command("show")
def pool_show(spec: str = typer.Argument("world", help="'world', 'textspan', a file or a URL."),
              out: Path = typer.Option(None, help="Write the pool (.txt or .tsv) here.")) -> None:
    """Summarise a pool (count per concept when it has ground truth), optionally save it."""
    from ccs import pools

    try:
        pool = pools.load(spec)
    except pools.PoolNotAvailableError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{pool.name}: {len(pool)} descriptions")
    if pool.concepts is not None:
        df = pool.frame()
        typer.echo(df.groupby(["in_world", "concept"]).size().to_string() if "in_world" in df
                   else df.concept.value_counts().to_string())
    if out:
        typer.echo(f"wrote {pools.write(pool, out)}")
