"""Shared fixtures of the unit tests."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch


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
    html folder. Built once per session: test_book checks the build, test_site browses it."""
    from ccs import pipeline

    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run(
        [str(jb), "build", str(pipeline.ROOT), "--path-output", str(out), "-W", "-n", "--keep-going", "--quiet"],
        capture_output=True,
        text=True,
        cwd=pipeline.ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "_build" / "html"
