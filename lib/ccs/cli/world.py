"""`ccs world ...`: look at the concept world."""

from __future__ import annotations

from pathlib import Path

import typer

from ccs.cli import app, bad

world_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="The generated concept world (images, captions, splits)."
)
app.add_typer(world_app, name="world")


@world_app.command()
def preview(
    n: int = typer.Option(16, min=1, help="Number of images."),
    out: Path = typer.Option(Path("grid.png"), dir_okay=False, help="PNG file to write."),
    seed: int = typer.Option(0, min=0),
    split: str = typer.Option(
        "test", help="World split: " + ", ".join(["train", "test", "sketch", "noisy", "novel-shades", "novel-shapes"])
    ),
    scale: int = typer.Option(3, min=1, max=32, help="Pixel magnification."),
) -> None:
    """Draw `n` samples of a split into a grid image and print their captions."""
    from PIL import Image

    from ccs import world

    if split not in world.SPLITS:
        raise bad("--split", f"{split!r} is not one of {', '.join(world.SPLITS)}.")
    Image.init()
    if out.suffix.lower() not in Image.registered_extensions():
        raise bad("--out", f"{out}: give an image file name, e.g. grid.png.")
    if not out.parent.is_dir():
        raise bad("--out", f"the folder {out.parent} does not exist.")

    batch = world.sample(n, seed, split)
    Image.fromarray(world.grid(batch.images, nrow=min(8, n), scale=scale)).save(out)
    for i, c in enumerate(batch.captions):
        typer.echo(f"{i:3d}  {c}")
    typer.echo(f"wrote {out}")


@world_app.command()
def splits() -> None:
    """List the world's splits."""
    from ccs import world

    for name, what in world.SPLITS.items():
        typer.echo(f"{name:14s} {what}")
