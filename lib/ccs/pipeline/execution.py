"""Running a notebook: papermill, in a scratch folder, with a kernel over Unix sockets.

**Book pages are written only by the book's run.** `execute` converts `notebooks/<experiment>.py`
(jupytext percent format) to a notebook and runs it with papermill in a scratch folder; only when it
has finished are the notebook and the files it wrote (its JSON) moved into place, so an interruption
at any moment leaves the previous page as it was. A run with parameters other than the grid's goes to
`outputs/<model>/<experiment>-<digest>/`, never over a committed page. Parameters are checked against
the notebook's parameters cell (`ccs.pipeline.params`) before a kernel starts.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shutil
import tempfile
from functools import cache
from pathlib import Path

from ccs.pipeline import freshness, gridfile, params, paths
from ccs.pipeline.gridfile import Run


def output_path(run: Run, extra: dict | None = None) -> Path:
    """Where a run's notebook goes: its book page for a run of the grid with the grid's parameters,
    else a folder of its own under outputs/ named by the digest of its parameters."""
    in_grid = any(r == run for r in gridfile.runs()) if paths.GRID.is_file() else False
    if in_grid and all(run.parameters.get(k, object()) == v for k, v in (extra or {}).items()):
        return run.notebook
    return paths.output(run.model, run.experiment, freshness.digest(run, extra)[:10])


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
    for path in paths.library_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in node.bases
            ):
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
            line = text[: text.index(cell)].count("\n") + (int(m[1]) if m else 1)
            where = f"{run.source.relative_to(run.source.parents[1]).as_posix()} line {line}"
        message = (
            f"{run.experiment} page ({run.model}), {where}: {e.ename}: {evalue or '(no message)'} "
            f"(unexpected; rerun with `ccs --debug run ...` for the traceback)"
        )
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
            self._clients = []

        def client(self, **kwargs):
            kc = super().client(**kwargs)
            self._clients.append(kc)
            return kc

        def stop_clients(self) -> None:
            """Close the channels of every client handed out (nbclient keeps its own open when the
            kernel was not its to stop)."""
            while self._clients:
                self._clients.pop().stop_channels()

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
    return execute_in_turn([run], progress=progress, extra=extra, out_dir=out_dir)[0]


def execute_in_turn(
    runs: list[Run], *, progress: bool = True, extra: dict | None = None, out_dir: Path | None = None
) -> list[Path]:
    """`execute` for several notebooks (the pages of one model, in book order) one after the other in
    one kernel. Each page is checked before the kernel starts and written as soon as it has run, so a
    failure or an interruption keeps the pages before it. Between pages the kernel forgets the page
    before (`FRESH_PAGE`): what it keeps is what was imported, and the library's memoised loads. The
    imports a page's kernel makes cost about 9 s of CPU (open_clip alone 4.4 s: benchmarks/README.md),
    paid once per model instead of once per page. nbval re-executes every page in a kernel of its own,
    so a page that leaned on the state of the one before it would fail the tests."""
    import jupytext
    import nbformat

    planned = [_plan(run, extra, out_dir) for run in runs]  # every check before the kernel starts
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernel inherits it: no progress bars in pages
    _absolute_paths_for_the_kernel()
    scratch = paths.scratch()
    scratch.mkdir(exist_ok=True)
    written = []
    with _Signals() as signals, _kernel(scratch) as km:
        for run, parameters, out in planned:
            nb = jupytext.read(run.source)
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            with tempfile.TemporaryDirectory(dir=scratch, prefix=f"{run.model}-{run.experiment}-") as tmp:
                work = Path(tmp) / "work"
                work.mkdir()
                src, dst = Path(tmp) / "source.ipynb", Path(tmp) / "executed.ipynb"
                nbformat.write(nb, src)
                executed = _run_in(km, run, src, dst, work, parameters, progress)
                tidy(executed, run.model)
                executed.metadata["ccs"] = {"digest": freshness.digest(run, extra), "parameters": parameters}
                nbformat.write(executed, dst)
                out.parent.mkdir(parents=True, exist_ok=True)
                with signals.hold():
                    for f in sorted(work.iterdir()):  # the files the notebook wrote (its JSON), then the page
                        if f.is_file():
                            _move(f, out.parent / f.name)
                    _move(dst, out)
            written.append(out)
    return written


def _plan(run: Run, extra: dict | None, out_dir: Path | None) -> tuple[Run, dict, Path]:
    """Check a run before any kernel starts: its parameters, its weights, where its page goes.
    Returns the run, the parameters papermill injects and the page's path."""
    from ccs import models

    extra = dict(extra or {})
    if extra.get("model", run.model) != run.model:
        raise params.ParameterError(
            f"the model of a run is not a parameter: run {extra['model']} as the run's model "
            f"(`ccs run {extra['model']} {run.experiment}`)",
            "model",
        )
    extra.pop("model", None)
    parameters = {"model": run.model, **run.parameters, **extra}
    params.check_parameters(run.source, parameters)
    if parameters.get("weights") != "random":  # a clear error now, before a kernel starts
        models.check_weights(run.model)  # on disk and whole (not a truncated file)
    out = Path(out_dir) / f"{run.experiment}.ipynb" if out_dir else output_path(run, extra)
    check_destination(out.parent)  # writable: now, not after the whole run
    return run, parameters, out


# Run silently in the kernel before each page: the page before it leaves nothing the next one could
# read (its names, its folder; the inline backend has closed its figures), and the execution counts
# start at 1 as in a new kernel. Re-adding the catch-all "default" filter (a no-op: what applies when
# no filter matches) makes every module's record of the warnings it has shown out of date, so a
# warning is shown again on each page.
FRESH_PAGE = """\
import os as _os
_os.chdir({cwd!r})  # first: the page before's folder is gone, and IPython's reset asks for the current one
get_ipython().reset(new_session=False)
import warnings as _warnings
_warnings.filterwarnings("default", append=True)
get_ipython().execution_count = 1
del _warnings
"""


def _run_in(km, run: Run, src: Path, dst: Path, work: Path, parameters: dict, progress: bool):
    """Execute the notebook `src` into `dst` with papermill in the started kernel of `km`, in the
    folder `work`; returns the executed notebook."""
    import papermill
    from jupyter_core.utils import run_sync

    kc = km.client()
    kc.start_channels()
    try:
        run_sync(kc.wait_for_ready)(timeout=60)
        reply = run_sync(kc.execute_interactive)(FRESH_PAGE.format(cwd=str(work)), silent=True, store_history=False, timeout=60)
    finally:
        kc.stop_channels()
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"the kernel could not be made ready for the {run.experiment} page: {reply['content']}")
    try:
        return papermill.execute_notebook(
            src,
            dst,
            parameters=parameters,
            km=km,  # the started kernel (nbclient then neither starts nor stops one)
            kernel_name="python3",
            progress_bar=progress,
            # papermill writes the whole notebook before and after every cell by default (up to
            # 0.4 s a page): this one is a scratch copy nobody reads until the run ends
            request_save_on_cell_execute=False,
        )
    except papermill.PapermillExecutionError as e:
        raise _notebook_error(run, e) from e
    finally:
        km.stop_clients()  # nbclient leaves a kernel it did not start, and its client, running


@contextlib.contextmanager
def _kernel(cwd: Path):
    """A started kernel (over Unix sockets, ending with this process), shut down at once on leaving:
    once the pages are written it holds nothing they need, and a graceful shutdown waits for it to
    unload torch and the rest (about a second)."""
    from jupyter_core.utils import run_sync

    km = _ipc_kernel_manager()(kernel_name="python3")
    # IPython's history in memory, as nbclient asks of the kernels it starts: no database in the home folder
    run_sync(km.start_kernel)(cwd=str(cwd), extra_arguments=["--HistoryManager.hist_file=:memory:"])
    try:
        yield km
    finally:
        run_sync(km.shutdown_kernel)(now=True)


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
        raise NotADirectoryError(
            f"cannot write the run's results into {folder}: {existing} is not a folder; "
            "move it away, or run with other parameters"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".ccs-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise type(e)(
            e.errno,
            f"cannot write the run's results into {folder}: {existing} is not writable "
            f"({e.strerror}); make it writable (or mount it read-write) and run again",
        ) from None


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
    """Make a page depend on its content only: deterministic cell ids, each run of printed text as one
    output (the kernel sends it in chunks that depend on timing), the injected-parameters cell
    hidden behind a toggle, and no run-specific metadata (times, durations, paths). The figure labels
    of a page of any model but the default get the model's name as a suffix (references too): the
    book holds every model's pages, and Sphinx wants each label once."""
    if model is not None and model != TINY_MODEL:
        _suffix_figure_labels(nb, model)
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:03d}"
        if cell.get("outputs"):
            cell.outputs = _merged_streams(cell.outputs)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    pm = nb.metadata.get("papermill", {})
    for key in list(pm):
        if key != "parameters":
            pm.pop(key)


def _merged_streams(outputs: list) -> list:
    """`outputs` with each run of consecutive stream outputs of one stream (stdout, stderr) as one."""
    merged = []
    for out in outputs:
        last = merged[-1] if merged else None
        if out.output_type == "stream" and last is not None and last.output_type == "stream" and last.name == out.name:
            last.text += out.text
        else:
            merged.append(out)
    return merged


TINY_MODEL = "ccs-tiny"  # the book's default model (ccs.models.TINY; not imported: this module stays light)


def _suffix_figure_labels(nb, model: str) -> None:
    for cell in nb.cells:
        fig = cell.metadata.get("mystnb", {}).get("figure", {})
        if fig.get("name") and not fig["name"].endswith(f"-{model}"):
            fig["name"] = f"{fig['name']}-{model}"
        if cell.cell_type == "markdown" and "{numref}`fig-" in cell.source:
            cell.source = re.sub(
                r"\{numref\}`(fig-[a-z0-9-]+?)`",
                lambda m: m.group(0) if m.group(1).endswith(model) else "{numref}`" + m.group(1) + f"-{model}`",
                cell.source,
            )
