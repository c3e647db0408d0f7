"""Snakemake's lock, and clearing the one a killed run left behind.

Snakemake locks the outputs of a run in .snakemake/locks/ and removes the lock when it ends; a
Snakemake killed with SIGKILL leaves it behind, and the next run stops with a LockException. The
lock files do not say who holds them, so the Snakefile records its own process here once it holds
the lock (`record_lock_owner`, in `onstart`), and the next run clears a lock whose recorded owner is
no longer running on this machine (`clear_stale_lock`). A Snakemake killed between taking the lock
and recording it leaves a lock without a record: that one is cleared when no Snakemake process is
running in the repository (read from /proc). A lock held on another machine is left to Snakemake
(`snakemake --unlock` clears it by hand).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ccs.pipeline import paths


def _owner_file(root: Path | None = None) -> Path:
    return paths.lock_owner(root)


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


def _ancestors() -> set[int]:
    """The process ids of this process's parent, its parent's parent, ... up to init."""
    out, pid = set(), os.getppid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # field 4: the parent
        except (OSError, IndexError, ValueError):
            break
    return out


def _snakemakes(root: Path) -> list[int]:
    """The processes of this machine, other than this one and its ancestors, running Snakemake in the
    folder `root` (their command line names snakemake and their working folder is `root`); a process of
    another user whose folder cannot be read counts, as does every one where /proc cannot be read."""
    try:
        entries = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return [-1]  # cannot tell: assume one is running
    here, out, mine = root.resolve(), [], _ancestors()
    for proc in entries:
        pid = int(proc.name)
        if pid == os.getpid() or pid in mine:  # a launcher of this run (`time snakemake`, `bash -c ...`)
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

    root = root or paths.ROOT
    locks = paths.locks(root)
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
    return (
        f"cleared the lock of a Snakemake run that is no longer running ({who}; "
        "it was killed): its pages are as they were before it"
    )
