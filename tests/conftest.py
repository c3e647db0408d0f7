"""Shared fixtures of the unit tests."""

import os
import subprocess
import sys
from pathlib import Path

# `make test` runs the tests in pytest-xdist workers, one per core (pyproject's addopts). Each worker
# gets its share of the cores, set before torch loads, and the kernels and subprocesses it starts
# inherit it: two processes with two OpenMP threads each on two cores spin waiting for each other and
# run about 9x slower than one (benchmarks/README.md, "Why two pages side by side need one thread").
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = str(max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = _threads

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: a second thread only adds overhead (and contention on a shared machine)."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The book built strictly (warnings are errors), as `make html` builds it, into a tmp folder: its
    html folder. Built once per test run: test_book checks the build, test_site browses it; under
    pytest-xdist they may run in two workers, and the first to ask builds it (under a file lock in the
    run's shared tmp folder) while the other waits for it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the workers' common folder
    with FileLock(root / "book.lock"):
        html = root / "book" / "_build" / "html"
        if not (root / "book" / "built").exists():
            _build_book(root / "book")
            (root / "book" / "built").touch()
    return html


def _build_book(out: Path) -> None:
    from ccs import pipeline

    out.mkdir(exist_ok=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run(
        [str(jb), "build", str(pipeline.ROOT), "--path-output", str(out), "-W", "-n", "--keep-going", "--quiet"],
        capture_output=True,
        text=True,
        cwd=pipeline.ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
