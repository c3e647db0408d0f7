"""The book's pipeline: the grid in pipeline.yaml, papermill runs of the notebooks, the table of contents.

`pipeline.yaml` is the only list of models and experiments. The Snakefile asks this module which
notebooks to produce and whether each is up to date; the tests ask it which notebooks to validate;
`_toc.yml` is written from it.

**Up to date is decided by content, not file times.** Each executed page stores in its metadata the
digest of what produced it: the notebook source, the library and its data files, the page's
parameters and the model's weights (`digest`). A page whose stored digest matches is current, so a
fresh clone (where every file has the same time) executes nothing, and a changed parameter re-runs
exactly the pages it feeds. The Snakefile sees this through a stamp file per page (`stamp`).

**Book pages are written only by the book's run.** `execute` converts `notebooks/<experiment>.py`
(jupytext percent format) to a notebook and runs it with papermill in a scratch folder; only when it
has finished are the notebook and the files it wrote (its JSON) moved into place, so an interruption
at any moment leaves the previous page as it was. A run with parameters other than the grid's goes to
`outputs/<model>/<experiment>-<digest>/`, never over a committed page. Parameters are checked against
the notebook's parameters cell, where each is declared once (name, type, range), before a kernel starts.
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from ccs.cache import library_digest

ROOT = Path(__file__).resolve().parents[2]  # the repository (lib/ccs/pipeline.py)
GRID = ROOT / "pipeline.yaml"
TOC = ROOT / "_toc.yml"
# Under ROOT (looked up when used): outputs/ holds runs with parameters of their own, runs-tmp/ the
# scratch folders papermill works in (the same file system as the pages, for atomic moves), and
# .snakemake/ccs-stamps/ the stamps Snakemake reads (all git-ignored).


class ParameterError(ValueError):
    """A notebook parameter that does not exist, has the wrong type, or is out of range."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = name  # the parameter at fault, when there is one


@dataclass(frozen=True)
class Run:
    model: str
    experiment: str
    parameters: dict = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return ROOT / "notebooks" / f"{self.experiment}.py"

    @property
    def notebook(self) -> Path:
        return ROOT / "book" / "runs" / self.model / f"{self.experiment}.ipynb"


def grid(path: Path | None = None) -> dict:
    return yaml.safe_load((path or GRID).read_text())


def runs(path: Path | None = None) -> list[Run]:
    """Every (model, experiment) notebook the book contains, in book order."""
    g = grid(path)
    return [Run(model, exp, dict((cfg or {}).get("parameters") or {}))
            for model in g["models"] for exp, cfg in g["experiments"].items()
            if model in (cfg or {}).get("models", g["models"])]


def find(model: str, experiment: str, path: Path | None = None) -> Run:
    for run in runs(path):
        if (run.model, run.experiment) == (model, experiment):
            return run
    raise KeyError(f"({model}, {experiment}) is not in {(path or GRID).name}; add it there first.")


# --- parameters --------------------------------------------------------------------------------
#
# Each parameter of a notebook is declared once, on its line of the parameters cell: its name, its
# default (whose type is the parameter's type) and, opening the trailing comment, its range in
# brackets, e.g.
#
#     clips = 500  # [at least 3] concept-world clips (the page shows three)
#     backend = "embedding"  # [embedding | openai] labeler and judge
#     last_layers = 4  # [1 .. layers] analyse the heads of the last LAYERS layers
#     splits = ["test", "sketch"]  # [list of split] world splits to evaluate
#
# A range is one or more clauses separated by commas, each one of: a bound (`at least N`, `more than
# N`, `at most N`, `less than N`, `N .. M`; N may be `layers`, the model's layer count), choices
# (`a | b | c`), a kind (`model`, `pool`, `concept`, `split`, `text`: see KINDS), or `list of` one of
# these (a non-empty list of distinct items). `check_parameters` holds every value to it before a
# kernel starts. (Words, not `>=`: papermill skips a parameter line with a second `=`.)


@dataclass(frozen=True)
class Declaration:
    name: str
    default: object
    range: str  # the bracketed range of the parameter's line ('' when it has none)

    @property
    def type(self) -> type:
        return float if isinstance(self.default, float) else type(self.default)


def _is_text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_model(v) -> bool:
    from ccs import models

    return isinstance(v, str) and v in models.names()


def _is_pool(v) -> bool:
    """A pool spec that loads: the world pool's forms are checked by their syntax (generating them
    takes seconds), a file or a downloaded URL by reading it."""
    import re

    if not _is_text(v):
        return False
    if v.startswith("world"):
        return bool(re.fullmatch(r"world|world\+[1-9][0-9]{0,3}|world:[1-9][0-9]*", v))
    from ccs import pools

    pools.load(v, download=False)  # not here: its error says how to get it
    return True


def _world(attr: str):
    from ccs import world

    return getattr(world, attr)


# kind -> (test, what it means in a message)
KINDS = {
    "text": (_is_text, "a non-empty string"),
    "model": (_is_model, "a registered model (`ccs models`)"),
    "pool": (_is_pool, "a pool that is here: 'world', 'world+N' (N <= 9999), 'world:N', 'textspan' or a URL "
                       "once fetched (`ccs pool fetch`), or a pool file"),
    "concept": (lambda v: v in _world("CONCEPTS"), "a concept of the world"),
    "split": (lambda v: v in _world("SPLITS"), "a split of the world"),
}


def _bound(text: str, context: dict) -> float:
    text = text.strip()
    if text == "layers":
        from ccs import models

        return models.spec(context["model"]).layers
    return float(text)


def _clause(clause: str, context: dict):
    """(test, description) of one clause of a range."""
    import operator
    import re

    clause = clause.strip()
    if clause.startswith("list of "):
        test, what = _clause(clause[len("list of "):], context)
        return ((lambda v: isinstance(v, list) and len(v) > 0 and len(set(map(repr, v))) == len(v)
                 and all(test(x) for x in v)),
                f"a non-empty list of distinct items, each {what}")
    if clause in KINDS:
        test, what = KINDS[clause]
        if clause in ("concept", "split"):
            what = f"{what}: {', '.join(_world(clause.upper() + 'S'))}"
        return test, what
    m = re.fullmatch(r"(\S+)\s*\.\.\s*(\S+)", clause)
    if m:
        lo, hi = _bound(m[1], context), _bound(m[2], context)
        return (lambda v: lo <= v <= hi), f"in {m[1]}..{m[2]}" + (f" (= {hi:g})" if m[2] == "layers" else "")
    m = re.fullmatch(r"(at least|more than|at most|less than)\s+(\S+)", clause)
    if m:
        op = {"at least": operator.ge, "more than": operator.gt, "at most": operator.le,
              "less than": operator.lt}[m[1]]
        bound = _bound(m[2], context)
        return (lambda v: op(v, bound)), f"{m[1]} {m[2]}"
    choices = [c.strip().strip("'\"") for c in clause.split("|")]
    if len(choices) > 1 or re.fullmatch(r"[\w.-]+", clause):
        return (lambda v: v in choices), " or ".join(", ".join(map(repr, choices)).rsplit(", ", 1))
    raise ParameterError(f"cannot read the range [{clause}]")


def declarations(source: Path) -> dict[str, Declaration]:
    """The parameters a notebook declares, read from its parameters cell (the cell tagged
    ``parameters``) without running it: {name: Declaration}."""
    import io
    import tokenize

    import jupytext

    cells = [c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{source.name} needs exactly one cell tagged 'parameters'")
    text = cells[0].source
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            spec = ""
            for line in range(node.lineno, node.end_lineno + 1):
                comment = comments.get(line, "")
                if comment.startswith("[") and "]" in comment:
                    spec = comment[1:comment.index("]")].strip()
                    break
            out[name] = Declaration(name, ast.literal_eval(node.value), spec)
    return out


def notebook_parameters(source: Path) -> dict:
    """The parameters a notebook declares: {name: default}."""
    return {name: d.default for name, d in declarations(source).items()}


def check_parameters(source: Path, parameters: dict) -> None:
    """Raise a ParameterError unless every parameter is declared by the notebook, has the type of its
    default (an int where a float is expected is fine) and lies in its declared range."""
    declared = declarations(source)
    context = {"model": parameters.get("model", declared.get("model", Declaration("model", "", "")).default)}
    if "model" in declared:  # first: the other ranges may depend on the model
        parameters = {"model": context["model"], **parameters}
    for name, value in parameters.items():
        if name not in declared:
            raise ParameterError(f"{source.stem} has no parameter {name!r}; its parameters: "
                                 f"{', '.join(declared)}", name)
        d = declared[name]
        expected = d.type
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ParameterError(f"{source.stem}: {name} must be {'an' if expected.__name__[0] in 'aeiou' else 'a'} "
                                 f"{expected.__name__} (like its default {d.default!r}), not {value!r}", name)
        if expected is float and not math.isfinite(value):  # .inf passes "more than 0", then hangs or fails later
            raise ParameterError(f"{source.stem}: {name} must be a finite number, not {value!r}", name)
        for clause in filter(None, (c.strip() for c in d.range.split(","))):
            test, what = _clause(clause, context)
            try:
                ok = test(value)
            except (OSError, ValueError, KeyError) as e:  # the library's own reason (a pool not fetched)
                raise ParameterError(f"{source.stem}: {name} = {value!r}: {' '.join(str(e).split())}", name) from None
            if not ok:
                raise ParameterError(f"{source.stem}: {name} must be {what}, not {value!r}", name)


# --- what produced a page ----------------------------------------------------------------------

@cache
def weights_digest(model: str) -> str:
    """The weights a page ran with: the content of the packaged ccs-tiny weights; for a paper model the
    checkpoint's name and size (hashing gigabytes on every check would cost minutes), or 'missing'."""
    from ccs import models

    try:
        path = models.weights_path(model)
    except models.WeightsNotFoundError:
        return "missing"
    if models.spec(model).embedded:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.name}:{path.stat().st_size}"


def digest(run: Run, parameters: dict | None = None) -> str:
    """The digest of everything that produces the page of `run` (with `parameters` on top)."""
    params = {"model": run.model, **run.parameters, **(parameters or {})}
    h = hashlib.sha256()
    for part in (run.source.read_bytes(), library_digest().encode(), json.dumps(params, sort_keys=True).encode(),
                 weights_digest(run.model).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:32]


def stored_digest(notebook: Path) -> str | None:
    """The digest recorded in an executed page, or None (missing, unreadable, or from before digests)."""
    try:
        meta = json.loads(notebook.read_text()).get("metadata", {})
    except (OSError, ValueError):
        return None
    return meta.get("ccs", {}).get("digest")


def is_current(run: Run) -> bool:
    return stored_digest(run.notebook) == digest(run)


def stale(path: Path | None = None) -> list[Run]:
    """The grid's pages that are missing or were produced by something else than what is here now."""
    return [run for run in runs(path) if not is_current(run)]


def stamp(run: Run) -> tuple[Path, Path]:
    """The two files through which Snakemake sees whether `run`'s page is current: its input, a stamp
    dated to the epoch while the page's stored digest matches (never newer than anything) and to now
    when it does not (newer than anything); and its output, a "done" file that stands for the page.
    The page itself is not a Snakemake output because Snakemake deletes a job's outputs before it
    runs the job: an interrupted run would lose the page. A current page gets its done file here,
    so a fresh clone, which has none, runs nothing."""
    base = ROOT / ".snakemake" / "ccs-stamps" / run.model
    path, done = base / f"{run.experiment}.stamp", base / f"{run.experiment}.done"
    base.mkdir(parents=True, exist_ok=True)
    if is_current(run):
        if not path.exists() or path.stat().st_mtime != 0:
            path.write_text(digest(run))
            os.utime(path, (0, 0))
        done.touch()
    else:
        path.write_text(digest(run))  # written now: newer than the done file
    return path, done


# --- Snakemake's lock ---------------------------------------------------------------------------
#
# Snakemake locks the outputs of a run in .snakemake/locks/ and removes the lock when it ends; a
# Snakemake killed with SIGKILL leaves it behind, and the next run stops with a LockException. The
# lock files do not say who holds them, so the Snakefile records its own process here once it holds
# the lock (`record_lock_owner`, in `onstart`), and the next run clears a lock whose recorded owner is
# no longer running on this machine (`clear_stale_lock`). A Snakemake killed between taking the lock
# and recording it leaves a lock without a record: that one is cleared when no Snakemake process is
# running in the repository (read from /proc). A lock held on another machine is left to Snakemake
# (`snakemake --unlock` clears it by hand).

def _owner_file(root: Path | None = None) -> Path:
    return (root or ROOT) / ".snakemake" / "ccs-lock-owner.json"


def _process(pid: int) -> dict:
    """Who process `pid` is, in a form that a later process with the same id does not share."""
    import socket

    me = {"host": socket.gethostname(), "pid": pid, "start": None, "boot": None, "state": None}
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        me["state"] = stat[0]  # field 3: Z for a zombie (dead, not yet reaped)
        me["start"] = stat[19]  # field 22: start time, in ticks since boot
        me["boot"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        pass
    return me


def _alive(owner: dict) -> bool:
    now = _process(owner["pid"])
    if owner.get("boot") and now["boot"] and owner["boot"] != now["boot"]:
        return False  # recorded before the machine restarted
    if now["state"] in ("Z", "X"):
        return False  # exited; only its parent has not reaped it yet
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return owner.get("start") is None or now["start"] is None or owner["start"] == now["start"]


def record_lock_owner(root: Path | None = None) -> None:
    path = _owner_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_process(os.getpid())))


def forget_lock_owner(root: Path | None = None) -> None:
    path = _owner_file(root)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _snakemakes(root: Path) -> list[int]:
    """The processes of this machine, other than this one, running Snakemake in the folder `root`
    (their command line names snakemake and their working folder is `root`); a process of another
    user whose folder cannot be read counts, as does every one where /proc cannot be read."""
    try:
        entries = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return [-1]  # cannot tell: assume one is running
    here, out = root.resolve(), []
    for proc in entries:
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            if b"snakemake" not in (proc / "cmdline").read_bytes():  # empty for a zombie
                continue
            if Path(os.readlink(proc / "cwd")) == here:
                out.append(pid)
        except PermissionError:
            out.append(pid)
        except OSError:  # gone meanwhile
            continue
    return out


def clear_stale_lock(root: Path | None = None) -> str | None:
    """Remove Snakemake's lock when the run that took it is dead; returns what was done, or None.

    Dead: its recorded owner is no longer running on this machine, or, for a lock without a record
    (a run killed between taking the lock and recording it), no Snakemake runs in the repository."""
    import socket

    root = root or ROOT
    locks = root / ".snakemake" / "locks"
    files = sorted(locks.glob("*.lock")) if locks.is_dir() else []
    try:
        owner = json.loads(_owner_file(root).read_text())
    except (OSError, ValueError):
        owner = None
    if not files:
        _owner_file(root).unlink(missing_ok=True)
        return None
    if owner is not None and (owner.get("host") != socket.gethostname() or _alive(owner)):
        return None
    if _snakemakes(root):  # one is running here (it may hold the lock without having recorded it yet)
        return None
    for f in files:
        f.unlink(missing_ok=True)
    _owner_file(root).unlink(missing_ok=True)
    who = f"process {owner['pid']}" if owner else "it had not recorded its process yet"
    return (f"cleared the lock of a Snakemake run that is no longer running ({who}; "
            "it was killed): its pages are as they were before it")


# --- table of contents -------------------------------------------------------------------------

def toc(path: Path | None = None) -> dict:
    """The Jupyter Book table of contents: the root page, the prose parts that come before the runs
    (`prose: before`), one part per model with its executed pages, then the prose parts after them
    (`prose: after`). Each prose part is ``{caption, chapters: [file, ...]}``; a plain list under
    `prose` is one part "Using the book" after the runs."""
    g = grid(path)
    prose = g.get("prose") or {}
    if isinstance(prose, list):
        prose = {"after": [{"caption": "Using the book", "chapters": prose}]}

    def part(p: dict) -> dict:
        return {"caption": p["caption"], "chapters": [{"file": f} for f in p.get("chapters") or []]}

    parts = [part(p) for p in prose.get("before") or []]
    for model in g["models"]:
        chapters = [{"file": str(r.notebook.relative_to(ROOT).with_suffix(""))}
                    for r in runs(path) if r.model == model]
        parts.append({"caption": f"Runs: {model}", "chapters": chapters})
    parts += [part(p) for p in prose.get("after") or []]
    return {"format": "jb-book", "root": g.get("root", "book/intro"),
            "parts": [p for p in parts if p["chapters"]]}


def toc_text(path: Path | None = None) -> str:
    header = "# Written by `ccs toc` from pipeline.yaml; edit that file instead.\n"
    return header + yaml.safe_dump(toc(path), sort_keys=False)


def write_toc(path: Path | None = None, out: Path | None = None) -> Path:
    out = out or TOC
    out.write_text(toc_text(path))
    return out


# --- execution ---------------------------------------------------------------------------------

def output_path(run: Run, extra: dict | None = None) -> Path:
    """Where a run's notebook goes: its book page for a run of the grid with the grid's parameters,
    else a folder of its own under outputs/ named by the digest of its parameters."""
    in_grid = any(r == run for r in runs()) if GRID.is_file() else False
    if in_grid and all(run.parameters.get(k, object()) == v for k, v in (extra or {}).items()):
        return run.notebook
    return ROOT / "outputs" / run.model / f"{run.experiment}-{digest(run, extra)[:10]}" / f"{run.experiment}.ipynb"


class NotebookError(RuntimeError):
    """A notebook stopped with an error in one of its cells. Its message is the error's own message
    when the library raised it (a dataset, an endpoint, a pool: something the user can act on), else
    the page, the cell and the error; `kernel_traceback` holds the kernel's traceback (`ccs --debug`
    prints it)."""

    def __init__(self, message: str, kernel_traceback: str = ""):
        super().__init__(message)
        self.kernel_traceback = kernel_traceback


_ANSI = "\x1b\\[[0-9;]*[A-Za-z]"


@cache
def library_errors() -> frozenset[str]:
    """The names of the exception classes the library defines (read from its source, not imported)."""
    names = set()
    for path in (Path(__file__).parent).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in node.bases):
                names.add(node.name)
    return frozenset(names - {"_Done", "_Transient"})


def _notebook_error(run: Run, e) -> NotebookError:
    """The NotebookError for papermill's PapermillExecutionError `e`."""
    import re

    tb = re.sub(_ANSI, "", "\n".join(e.traceback or []))
    evalue = " ".join(str(e.evalue or "").split())
    files = re.findall(r"File (?:\"([^\"]+)\"|(\S+?):\d+)", tb)
    last = next((a or b for a, b in reversed(files)), "")
    in_library = "/ccs/" in last.replace("\\", "/") and "/notebooks/" not in last
    ours = e.ename in library_errors() or (in_library and e.ename in ("ValueError", "RuntimeError"))
    if ours and evalue:
        message = evalue
    else:
        where = f"cell {e.exec_count}"
        text, cell = run.source.read_text(), (e.source or "").strip()
        if cell and cell in text:  # the line of the notebook's source (the cell's start + the line in it)
            m = re.search(r"Cell In\[\d+\], line (\d+)", tb)
            line = text[:text.index(cell)].count("\n") + (int(m[1]) if m else 1)
            where = f"{run.source.relative_to(run.source.parents[1]).as_posix()} line {line}"
        message = (f"{run.experiment} page ({run.model}), {where}: {e.ename}: {evalue or '(no message)'} "
                   f"(unexpected; rerun with `ccs --debug run ...` for the traceback)")
    return NotebookError(message, tb)


@cache
def _ipc_kernel_manager():
    """A kernel manager that talks to the kernel over Unix sockets in a private folder (mode 0700)
    instead of TCP ports on localhost: nothing listens on the network, and ipykernel has no
    unencrypted-TCP warning to print into every run."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)
            # short and absolute: a Unix socket's path has at most ~100 characters, and the kernel
            # runs in another folder than this process
            self._ipc_dir = tempfile.mkdtemp(prefix="ccs-kernel-")
            self.ip = os.path.join(self._ipc_dir, "k")

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            # after Ctrl-C or SIGTERM: kill the kernel at once; a graceful shutdown request reaches a
            # kernel still inside its cell, which then prints a traceback about its closed sockets
            await AsyncKernelManager.shutdown_kernel(self, now=now or _Signals.interrupted, restart=restart)

        async def _launch_kernel(self, kernel_cmd, **kw):
            # the kernel ends with this process, even when this one is killed with SIGKILL (set in
            # the kernel's process before it starts, so there is no moment when it could outlive us)
            from ccs import lifeline

            kw["preexec_fn"] = lifeline.preexec()
            return await AsyncKernelManager._launch_kernel(self, kernel_cmd, **kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

    return IPCKernelManager


class _Signals:
    """Within: SIGTERM (a parent that stops the run, or dies with PR_SET_PDEATHSIG) interrupts like
    Ctrl-C, and either kills the kernel at once, so the run ends in seconds with the scratch folder
    removed; `hold()` defers SIGINT and SIGTERM while the results are moved into place, so a page is
    never left half-replaced."""

    interrupted = False  # set by the handler: the kernel manager then shuts the kernel down at once

    def __enter__(self):
        import signal
        import threading

        self._main = threading.current_thread() is threading.main_thread()
        if self._main:
            self._old = {s: signal.signal(s, self._interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    @staticmethod
    def _interrupt(signum, frame):
        _Signals.interrupted = True
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc):
        import signal

        if self._main:
            for s, handler in self._old.items():
                signal.signal(s, handler)
        _Signals.interrupted = False

    def hold(self):
        import contextlib
        import signal

        @contextlib.contextmanager
        def held():
            if not self._main:
                yield
                return
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                yield
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        return held()


def exit_with_parent(signum: int | None = None, parent: int | None = None) -> bool:
    """Ask Linux to send this process `signum` (SIGTERM) when its parent dies (PR_SET_PDEATHSIG):
    `ccs run` under Snakemake ends with the process that started it, even when that one is killed
    with SIGKILL. `parent` is the process that started this one (default: the current parent); when
    it is no longer the parent, it died before the request, and this raises KeyboardInterrupt
    (`ccs.lifeline.ParentGone`). Returns False where the call does not exist (not Linux)."""
    import signal

    from ccs import lifeline

    return lifeline.exit_with_parent(int(signum or signal.SIGTERM), parent)


def execute(run: Run, *, progress: bool = True, extra: dict | None = None, out_dir: Path | None = None) -> Path:
    """Check the parameters, execute one notebook with papermill in a scratch folder, then move it
    and the files it wrote into place (`output_path`, or the folder `out_dir`). Returns the
    notebook's path. A cell that fails raises a NotebookError; SIGTERM and Ctrl-C stop the kernel
    and leave every page as it was."""
    import jupytext
    import nbformat
    import papermill

    from ccs import models

    extra = dict(extra or {})
    if extra.get("model", run.model) != run.model:
        raise ParameterError(f"the model of a run is not a parameter: run {extra['model']} as the run's model "
                             f"(`ccs run {extra['model']} {run.experiment}`)", "model")
    extra.pop("model", None)
    parameters = {"model": run.model, **run.parameters, **extra}
    check_parameters(run.source, parameters)
    if parameters.get("weights") != "random":  # a clear error now, before a kernel starts
        models.check_weights(run.model)  # on disk and whole (not a truncated file)
    out = Path(out_dir) / f"{run.experiment}.ipynb" if out_dir else output_path(run, extra)
    check_destination(out.parent)  # writable: now, not after the whole run
    nb = jupytext.read(run.source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernel inherits it: no progress bars in pages
    _absolute_paths_for_the_kernel()
    scratch = ROOT / "runs-tmp"
    scratch.mkdir(exist_ok=True)
    with _Signals() as signals, \
            tempfile.TemporaryDirectory(dir=scratch, prefix=f"{run.model}-{run.experiment}-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        src, dst = Path(tmp) / "source.ipynb", Path(tmp) / "executed.ipynb"
        nbformat.write(nb, src)
        try:
            papermill.execute_notebook(src, dst, parameters=parameters, cwd=str(work), kernel_name="python3",
                                       progress_bar=progress, kernel_manager_class=_ipc_kernel_manager())
        except papermill.PapermillExecutionError as e:
            raise _notebook_error(run, e) from e
        executed = nbformat.read(dst, as_version=4)
        tidy(executed, run.model)
        executed.metadata["ccs"] = {"digest": digest(run, extra), "parameters": parameters}
        nbformat.write(executed, dst)
        out.parent.mkdir(parents=True, exist_ok=True)
        with signals.hold():
            for f in sorted(work.iterdir()):  # the files the notebook wrote (its JSON), then the page
                if f.is_file():
                    _move(f, out.parent / f.name)
            _move(dst, out)
    return out


# Paths in the environment that the kernel reads; it runs in a scratch folder, deleted after the run,
# so a relative one would name a folder inside it (a cache that is thrown away with every run).
PATH_VARIABLES = ("CCS_CACHE", "CCS_DATA", "CCS_WEIGHTS")


def _absolute_paths_for_the_kernel() -> None:
    """Make each of PATH_VARIABLES that is relative absolute (from this process's folder, where the
    user meant it) before the kernel, which inherits the environment, starts elsewhere."""
    for name in PATH_VARIABLES:
        value = os.environ.get(name, "")
        if value.strip() and not os.path.isabs(os.path.expanduser(value)):
            os.environ[name] = os.path.abspath(value)


def check_destination(folder: Path) -> None:
    """Raise an OSError saying what to do unless the results of a run can be written into `folder`
    (created if needed): checked before the kernel starts, not found out after the whole run."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write the run's results into {folder}: {existing} is not a folder; "
                                 "move it away, or run with other parameters")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".ccs-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write the run's results into {folder}: {existing} is not writable "
                      f"({e.strerror}); make it writable (or mount it read-write) and run again") from None


def _move(src: Path, dst: Path) -> None:
    """Replace `dst` by `src` atomically: a rename, or, where `dst` is on another file system (a rename
    fails with EXDEV), a copy beside `dst` renamed over it. `dst` is never half-written."""
    import errno

    try:
        os.replace(src, dst)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)  # not mkstemp's 0600
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    src.unlink()


def tidy(nb, model: str | None = None) -> None:
    """Make a page depend on its content only: deterministic cell ids, the injected-parameters cell
    hidden behind a toggle, and no run-specific metadata (times, durations, paths). The figure labels
    of a page of any model but the default get the model's name as a suffix (references too): the
    book holds every model's pages, and Sphinx wants each label once."""
    if model is not None and model != TINY_MODEL:
        _suffix_figure_labels(nb, model)
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:03d}"
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    pm = nb.metadata.get("papermill", {})
    for key in list(pm):
        if key != "parameters":
            pm.pop(key)


TINY_MODEL = "ccs-tiny"  # the book's default model (ccs.models.TINY; not imported: this module stays light)


def _suffix_figure_labels(nb, model: str) -> None:
    for cell in nb.cells:
        fig = cell.metadata.get("mystnb", {}).get("figure", {})
        if fig.get("name") and not fig["name"].endswith(f"-{model}"):
            fig["name"] = f"{fig['name']}-{model}"
        if cell.cell_type == "markdown" and "{numref}`fig-" in cell.source:
            cell.source = re.sub(r"\{numref\}`(fig-[a-z0-9-]+?)`", lambda m: m.group(0) if m.group(1).endswith(model)
                                 else "{numref}`" + m.group(1) + f"-{model}`", cell.source)


def install_static(dest: Path | None = None) -> Path:
    """Copy MathJax (from the django-static-mathjax wheel) into _mathjax/, a static folder of the book
    (see _config.yml for why not _static/)."""
    dest = dest or ROOT / "_mathjax"
    from importlib import resources

    src = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5" / "tex-svg.js"
    out = dest / "mathjax" / "tex-svg.js"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out
