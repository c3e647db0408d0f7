"""The `ccs` command. Each sub-module of this package adds the commands of one part of the library
to `app`; they are imported here, so a new file is all a new command needs.

Errors have one style for every command, handled here once: a failing command prints one line,
``error: <what went wrong and what to do>``, on stderr and exits with 1 (usage errors keep click's
formatting and exit code 2; Ctrl-C prints ``interrupted`` and exits with 130). The traceback is
shown only with ``ccs --debug ...`` or ``CCS_DEBUG=1``. Commands therefore validate their options
(raising ``typer.BadParameter``) and otherwise let the library's exceptions through.

Usage errors and help are click's plain text (no Rich panels): an error is one ``Error: ...`` line
whatever the terminal's width.

`ccs --help` imports no heavy library (torch, scipy, sklearn, pandas): the command modules import the
library inside their commands, and a default that the library defines is read from its source
(`constant`, `dataclass_defaults`) instead of importing it. tests/test_cli.py checks the import graph.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import pkgutil
import sys
import traceback
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import typer
from typer.core import TyperGroup

from ccs.redact import redact

_DEBUG_KEY = "ccs.debug"
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # lib/ccs: where "our" errors are raised


def _debug(ctx: typer.Context | None = None) -> bool:
    """--debug on the command line, or CCS_DEBUG set to anything but '', 0, false, no, off."""
    if ctx is not None and ctx.find_root().meta.get(_DEBUG_KEY):
        return True
    return os.environ.get("CCS_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _raised_in_ccs(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR)


def error_message(e: BaseException) -> str:
    """The one line a user sees for an exception (without the ``error: `` prefix).

    Errors meant for users (the library's own exception classes, OS and network errors, and the
    ValueError / RuntimeError the library raises itself) show their message; anything else (a
    KeyError from a dict lookup, an error deep in numpy, ...) is shown with its type and a pointer
    to --debug.
    """
    text = f"missing key {e}" if type(e) is KeyError else str(e)
    text = redact(" ".join(text.split()))  # one line, without the API key (a server may echo it)
    meant = (
        isinstance(e, OSError)
        or type(e).__module__.split(".")[0] == "ccs"
        or (isinstance(e, (ValueError, RuntimeError)) and _raised_in_ccs(e))
    )
    if meant and text:
        return text
    return f"{type(e).__name__}: {text or '(no message)'} (unexpected; rerun with `ccs --debug ...` for the traceback)"


def _interrupted() -> typer.Exit:
    typer.echo("interrupted", err=True)
    return typer.Exit(130)


class _Group(TyperGroup):
    """The root command group: turns any exception of a command into the one-line error."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors (click's), explicit exits: typer's own handling
        except KeyboardInterrupt:
            raise _interrupted() from None
        except Exception as e:
            if _debug(ctx):
                typer.echo(redact(traceback.format_exc()), err=True, nl=False)
            typer.echo(f"error: {error_message(e)}", err=True)
            raise typer.Exit(1) from None


class _App(typer.Typer):
    """`typer.Typer` whose call (the installed `ccs` script calls ``app()``) also maps a Ctrl-C that
    arrives outside a command (while parsing, or importing) to ``interrupted`` and exit 130."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt:
            sys.exit(_interrupted().exit_code)


app = _App(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Concept Consistency in CLIP: models, heads, scores and the book's pipeline.",
)


@app.callback()
def _main(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error (also: CCS_DEBUG=1)."),
) -> None:
    ctx.meta[_DEBUG_KEY] = debug


def bad(param: str, message: str) -> typer.BadParameter:
    """A usage error for option `param` (e.g. '--layers'), to raise from a command's checks."""
    return typer.BadParameter(message, param_hint=f"'{param}'")


class RunBusyError(RuntimeError):
    """A training run's folder is held by another process."""


@contextmanager
def run_lock(run_dir: Path):
    """Hold a training run's folder for this process while it trains: a second process training the
    same folder would overwrite its checkpoints with its own. The lock (flock on ``.lock`` in the
    folder) goes with the process, so a killed run leaves nothing to clean up."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(
                f"{run_dir} is being trained by another process: wait for it to finish, or stop it (its last "
                "checkpoint is kept) and run this again to resume"
            ) from None
        yield


@cache
def _module_tree(module: str) -> ast.Module:
    top, *parts = module.split(".")
    spec = importlib.util.find_spec(top)  # imports the top package (ccs: light), not the module
    for i in range(len(parts)):  # a module of a subpackage (ccs.llm.endpoint): found without importing
        name = ".".join([top, *parts[: i + 1]])  # the subpackage (ccs.llm), whose __init__ imports a lot
        spec = importlib.machinery.PathFinder.find_spec(name, spec.submodule_search_locations)
    return ast.parse(Path(spec.origin).read_text())


def constant(module: str, name: str):
    """The value of the module-level constant `name` of `module` (e.g. 'ccs.llm.endpoint', 'TIMEOUT'),
    read from its source without importing it (a command's default, shown by --help); imported when it
    is not a literal there."""
    try:
        return _literal(module, name)
    except (LookupError, ValueError):
        return getattr(importlib.import_module(module), name)


def _literal(module: str, name: str):
    for node in _module_tree(module).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    return ast.literal_eval(node.value)
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for t, v in zip(target.elts, node.value.elts):
                        if isinstance(t, ast.Name) and t.id == name:
                            return ast.literal_eval(v)
    raise LookupError(f"{module} defines no literal constant {name}")


def dataclass_defaults(module: str, cls: str) -> dict:
    """The literal defaults of the fields of dataclass `cls` of `module`, read from its source."""
    for node in _module_tree(module).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            out = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value:
                    try:
                        out[item.target.id] = ast.literal_eval(item.value)
                    except ValueError:
                        pass  # not a literal (a factory, another module's constant)
            return out
    raise LookupError(f"{module} defines no class {cls}")


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
