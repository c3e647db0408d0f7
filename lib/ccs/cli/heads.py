"""`ccs textspan` (describe each head by texts) and `ccs pool ...` (description pools)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ccs.cli import app, bad

pool_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Text description pools for TextSpan.")
app.add_typer(pool_app, name="pool")


@app.command()
def textspan(
    model: str = typer.Option("ccs-tiny", help="Registered model name (see `ccs models`)."),
    texts: int = typer.Option(5, min=1, help="Texts per head."),
    images: int = typer.Option(1000, min=2, help="Concept-world images to decompose (at least 2: TextSpan explains a variance)."),
    pool: str = typer.Option("world", help="'world', 'world+N', 'textspan', a pool file or a URL."),
    layers: int = typer.Option(4, min=1, help="Analyse the heads of the last LAYERS layers (at most the model's layer count)."),
    rank: int = typer.Option(0, min=0, help="Rank of the text projection (0: the head dimension)."),
    seed: int = typer.Option(0, min=0, help="World sample seed."),
    convention: str = typer.Option("centred", help="How ln_post is split: centred | textspan."),
    untrained: bool = typer.Option(False, help="Random weights (for testing the mathematics)."),
    download: bool = typer.Option(False, help="Download a URL pool if not cached."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """TextSpan: each analysed head's texts, in selection order, with the variance they explain."""
    from ccs import decompose, models
    from ccs import textspan as ts

    # everything is checked before the model is loaded and anything is decomposed or cached
    n_layers = models.spec(model).layers  # an unknown name fails here, listing the known ones
    if layers > n_layers:
        raise bad("--layers", f"{model} has {n_layers} layers; pass --layers 1..{n_layers}.")
    if convention not in decompose.CONVENTIONS:
        raise bad("--convention", f"{convention!r} is not one of {', '.join(decompose.CONVENTIONS)}.")
    _check_pool(pool, download)
    a = ts.analyse(
        model,
        images=images,
        pool=pool,
        layers=layers,
        texts=texts,
        rank=rank or None,
        seed=seed,
        untrained=untrained,
        download=download,
        convention=convention,
        progress=not as_json,
    )
    records = a.records()
    if as_json:
        typer.echo(json.dumps(records, indent=1))
        return
    for r in records:
        typer.echo(f"L{r['layer']}.H{r['head']}  explained {r['explained']:.2f}")
        for t, v in zip(r["texts"], r["variance"]):
            typer.echo(f"    {v:5.2f}  {t}")


_MAX_COMBOS = 5000  # pools.world(combos=5000) takes ~15 s; the book uses tens


def _check_pool(spec: str, download: bool, param: str = "--pool"):
    """The pool `spec` loads and is not empty (cheap: files are small and the world pool is cached)."""
    import re

    from ccs import pools

    m = re.fullmatch(r"world\+(.*)", spec)
    if m and not (m[1].isdigit() and 0 < int(m[1]) <= _MAX_COMBOS):
        raise bad(
            param,
            f"{spec!r}: 'world+N' needs a whole number N of combinations in 1..{_MAX_COMBOS} "
            "(generating them takes time quadratic in N).",
        )
    pool = pools.load(spec, download=download)  # unknown or not downloaded: says what to do
    if not len(pool):
        raise bad(param, f"the pool {spec!r} has no descriptions.")
    return pool


@pool_app.command("fetch")
def pool_fetch(spec: str = typer.Argument(..., help="'textspan' or a URL.")) -> None:
    """Download a pool file into the cache (needs the network)."""
    import re

    from ccs import pools

    if spec not in pools.ALIASES and not re.match(r"https?://", spec):
        raise bad(
            "SPEC",
            f"{spec!r} is neither {', '.join(map(repr, pools.ALIASES))} nor an http(s) URL "
            "(a pool file on this machine needs no fetching: pass its path to --pool).",
        )
    pool = pools.load(spec, download=True)
    typer.echo(f"{spec}: {len(pool)} descriptions")


@pool_app.command("show")
def pool_show(
    spec: str = typer.Argument("world", help="'world', 'world+N', 'textspan', a file or a URL."),
    out: Path = typer.Option(None, dir_okay=False, help="Write the pool (.txt or .tsv) here."),
) -> None:
    """Summarise a pool (count per concept when it has ground truth), optionally save it."""
    from ccs import pools

    if out is not None:
        if out.suffix not in (".txt", ".tsv"):
            raise bad("--out", f"{out} must end in .txt (texts only) or .tsv (with ground truth).")
        if not out.parent.is_dir():
            raise bad("--out", f"the folder {out.parent} does not exist.")
    pool = _check_pool(spec, download=False, param="SPEC")
    typer.echo(f"{pool.name}: {len(pool)} descriptions")
    if pool.concepts is not None:
        df = pool.frame()
        typer.echo(
            df.groupby(["in_world", "concept"]).size().to_string() if "in_world" in df else df.concept.value_counts().to_string()
        )
    if out:
        typer.echo(f"wrote {pools.write(pool, out)}")
