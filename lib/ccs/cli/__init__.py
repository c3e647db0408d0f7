"""The `ccs` command. Each sub-module of this package adds the commands of one part of the library
to `app`; they are imported here, so a new file is all a new command needs."""
from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Concept Consistency in CLIP: models, heads, scores and the book's pipeline.")

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
