"""Nothing outlives the process that started it: a child ends when its parent dies, even by SIGKILL,
whatever the child was doing at that moment (importing, parsing the Snakefile, taking Snakemake's
lock, running a kernel).

Linux delivers a chosen signal to a process when its parent dies once the process has asked for it
(PR_SET_PDEATHSIG). Asked late, the request can come after the parent is already gone, and then the
signal never comes: the child, adopted by init, goes on. So the request is checked against the parent
the child was *started by*, a process id found before the child existed (the launcher's first
argument, or CCS_PARENT_PID, which the Snakefile sets to Snakemake's own pid before it starts any
job): when the parent is no longer that process, it has died, and the child exits at once. (Not the
`$PPID` of a shell the parent starts: when the parent dies before the shell reads it, it is already
init's pid, and the check passes.)

``python -m ccs.lifeline PARENT SIGNAL COMMAND...`` makes COMMAND end with process PARENT (the setting
survives exec): the Makefile starts Snakemake this way, PARENT being make's pid as make itself finds
it (``$(shell echo $$PPID)``, expanded by make before it starts the recipe). This module imports only the
standard library, so the launcher starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
ENV = "CCS_PARENT_PID"  # the process id of the parent a `ccs run --exit-with-parent` was started by


class ParentGone(KeyboardInterrupt):
    """The parent died before the request for its death signal was made: exit now."""


def exit_with_parent(signum: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Ask Linux to send this process `signum` when its parent dies (PR_SET_PDEATHSIG), then make sure
    the parent is still `parent` (default: the current parent): raises ParentGone when it died before
    the request. Returns False where the call does not exist (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    if parent is None:
        parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # died before the request: its signal will never come
        raise ParentGone(f"the parent process {parent} is gone")
    return True


def preexec(signum: int = signal.SIGKILL):
    """A `preexec_fn` for subprocess.Popen: the child (a kernel) receives `signum` when the process
    that starts it dies. Runs in the child between fork and exec, where the parent is known exactly."""
    parent = os.getpid()

    def child() -> None:
        try:
            exit_with_parent(signum, parent)
        except ParentGone:
            os._exit(1)

    return child


def parent_from_env() -> int | None:
    """The parent pid handed down in CCS_PARENT_PID (and removed from the environment, so that the
    processes this one starts do not take it for theirs), or None."""
    value = os.environ.pop(ENV, "").strip()
    return int(value) if value.isdigit() else None


def main(argv: list[str]) -> int:
    """python -m ccs.lifeline PARENT SIGNAL COMMAND [ARG...]: exec COMMAND, which receives SIGNAL
    (a name such as KILL or TERM, or a number) when process PARENT dies; exits with 1 at once when
    PARENT has already died."""
    if len(argv) < 3 or not argv[0].isdigit():
        print("usage: python -m ccs.lifeline PARENT_PID SIGNAL COMMAND [ARG...]", file=sys.stderr)
        return 2
    parent, name, cmd = int(argv[0]), argv[1], argv[2:]
    signum = int(name) if name.isdigit() else getattr(signal, "SIG" + name.upper().removeprefix("SIG"))
    try:
        exit_with_parent(signum, parent)
    except ParentGone:
        return 1  # make has gone: start nothing
    os.execvp(cmd[0], cmd)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
