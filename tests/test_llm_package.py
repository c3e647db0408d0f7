"""The `ccs.llm` package: no import cycle with `ccs.scores` (which imports it), and every name of the
former single module still reachable as ``ccs.llm.NAME``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ccs.llm

PACKAGE = Path(ccs.llm.__file__).parent


def _imports(node: ast.AST) -> set[str]:
    """The modules an AST imports (``from ccs import scores`` counts as ``ccs.scores``)."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            names |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            names |= {n.module, *(f"{n.module}.{a.name}" for a in n.names)}
    return names


def test_no_module_that_importing_ccs_llm_loads_imports_ccs_scores():
    """Only ccs.llm.model_fit may import ccs.scores (anywhere, also inside a function), and the
    package's __init__ imports it only on demand (in `__getattr__`), never when it is imported."""
    for path in PACKAGE.glob("*.py"):
        if path.name != "model_fit.py":
            assert "ccs.scores" not in _imports(ast.parse(path.read_text())), path
    init = ast.parse((PACKAGE / "__init__.py").read_text())
    top = set().union(*(_imports(n) for n in init.body if not isinstance(n, ast.FunctionDef)))
    assert not {"ccs.llm.model_fit", "ccs.scores"} & top


def test_importing_ccs_llm_imports_no_ccs_scores():
    code = (
        "import sys, ccs.llm\n"
        "assert 'ccs.scores' not in sys.modules and 'ccs.llm.model_fit' not in sys.modules, 'cycle'\n"
        "from ccs.llm import fit_model_calibrations, model_fit\n"  # on demand: loads scores then
        "assert fit_model_calibrations is model_fit.fit_model_calibrations and 'ccs.scores' in sys.modules\n"
        "assert ccs.llm.OFFSET_STRENGTHS is model_fit.OFFSET_STRENGTHS\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for first in ("ccs.scores", "ccs.llm.model_fit"):  # either import order works
        p = subprocess.run(
            [sys.executable, "-c", f"import {first}, ccs.llm, ccs.scores; ccs.llm.fit_model_calibrations"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr


def test_the_command_line_reads_the_endpoint_defaults_without_importing_ccs_llm():
    code = (
        "import sys\nfrom ccs.cli import constant\n"
        "print(constant('ccs.llm.endpoint', 'TIMEOUT'), constant('ccs.llm.endpoint', 'MAX_INVALID'))\n"
        "assert 'ccs.llm' not in sys.modules\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(ccs.llm.TIMEOUT), str(ccs.llm.MAX_INVALID)]


def test_every_public_name_is_a_package_name():
    """What other code uses as ``llm.NAME`` (the notebooks, the command line, the benchmarks)."""
    from ccs import llm

    for name in (
        "make",
        "backend",
        "describe",
        "Backend",
        "UNKNOWN",
        "DATA",
        "Concept",
        "vocabulary",
        "normalise",
        "same",
        "group",
        "load_heads",
        "concept_examples",
        "CALIBRATIONS",
        "RECIPES",
        "calibration_for",
        "calibrations",
        "model_calibrations",
        "stored_calibration",
        "embed",
        "concept_text",
        "EmbeddingBackend",
        "calibrate",
        "fit_offsets",
        "fit_calibrations",
        "fit_model_calibrations",
        "OFFSET_STRENGTHS",
        "without_lines",
        "line_checks",
        "OpenAIBackend",
        "ResponseCache",
        "InvalidAnswer",
        "EndpointError",
        "EndpointRejected",
        "TooManyInvalid",
        "TIMEOUT",
        "RETRIES",
        "BACKOFF",
        "MAX_INVALID",
        "MAX_BACKOFF",
        "MAX_RETRY_AFTER",
        "CONNECT_TIMEOUT",
        "ROLES",
        "LABEL_SYSTEM",
        "LABEL_EXAMPLES",
        "JUDGE_SYSTEM",
        "JUDGE_EXAMPLES",
    ):
        assert hasattr(llm, name), name
    assert set(llm.__all__) <= set(dir(llm)) and "fit_model_calibrations" in dir(llm)
    assert (llm.DATA / "concepts.yaml").is_file()  # the packaged data, found from the subpackage too
